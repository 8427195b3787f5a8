//! A view's stored form: flat text fields, one per attribute, readable with `HGETALL`.
//!
//! [`Reader`] reads them back so that the form can grow: a field missing from a model stored
//! by an older build reads as its default; a field present but unreadable is an error.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why stored fields do not make a view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field:?} is invalid: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

/// JSON text for a list- or record-valued field; plain types cannot fail to serialize.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

pub struct Reader<'a> {
    fields: &'a BTreeMap<String, String>,
}

impl<'a> Reader<'a> {
    pub fn new(fields: &'a BTreeMap<String, String>) -> Self {
        Self { fields }
    }

    /// A text field; empty when absent.
    pub fn text(&self, field: &'static str) -> String {
        self.fields.get(field).cloned().unwrap_or_default()
    }

    /// A field parsed with `FromStr`; `T::default()` when absent.
    pub fn parse<T: FromStr + Default>(&self, field: &'static str) -> Result<T, FieldError>
    where
        T::Err: std::fmt::Display,
    {
        match self.fields.get(field).map(String::as_str) {
            None => Ok(T::default()),
            Some(raw) => raw.parse().map_err(|e: T::Err| FieldError {
                field,
                reason: e.to_string(),
            }),
        }
    }

    /// An optional field parsed with `FromStr`; `None` when absent or empty.
    pub fn optional<T: FromStr>(&self, field: &'static str) -> Result<Option<T>, FieldError>
    where
        T::Err: std::fmt::Display,
    {
        match self.fields.get(field).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|e: T::Err| FieldError {
                field,
                reason: e.to_string(),
            }),
        }
    }

    /// A JSON field; `T::default()` when absent.
    pub fn json<T: DeserializeOwned + Default>(
        &self,
        field: &'static str,
    ) -> Result<T, FieldError> {
        match self.fields.get(field) {
            None => Ok(T::default()),
            Some(raw) => serde_json::from_str(raw).map_err(|e| FieldError {
                field,
                reason: e.to_string(),
            }),
        }
    }
}

/// A view's stored form derived from its type: one text field per attribute, named as serde
/// names it; text as it is, numbers and booleans as their text, lists and records as JSON, an
/// absent option as empty. The type is the one definition: no key is spelt twice.
pub fn to_fields<T: Serialize>(value: &T) -> BTreeMap<String, String> {
    // Each top-level field written once, as it is serialized: a view is written on every event
    // it folds, so this is on the projector's hot path.
    let mut fields = BTreeMap::new();
    // Not a record (a derived `Serialize` of a struct always is): no fields.
    let _ = value.serialize(Record(&mut fields));
    fields
}

/// A record's fields, each as its text.
struct Record<'a>(&'a mut BTreeMap<String, String>);

impl serde::ser::SerializeStruct for Record<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &V,
    ) -> Result<(), serde_json::Error> {
        let json = serde_json::to_string(value)?;
        let text = if json == "null" {
            String::new()
        } else if json.starts_with('"') {
            serde_json::from_str::<String>(&json)?
        } else {
            json
        };
        self.0.insert(name.to_owned(), text);
        Ok(())
    }

    fn end(self) -> Result<(), serde_json::Error> {
        Ok(())
    }
}

macro_rules! not_a_record {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {$(
        fn $method(self, $(_: $arg),*) -> Result<(), serde_json::Error> {
            Err(serde::ser::Error::custom("not a record"))
        }
    )*};
}

impl<'a> serde::Serializer for Record<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = serde::ser::Impossible<(), serde_json::Error>;
    type SerializeTuple = serde::ser::Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = serde::ser::Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = serde::ser::Impossible<(), serde_json::Error>;
    type SerializeMap = serde::ser::Impossible<(), serde_json::Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = serde::ser::Impossible<(), serde_json::Error>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, serde_json::Error> {
        Ok(self)
    }

    not_a_record! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_u8(u8), serialize_u16(u16), serialize_u32(u32),
        serialize_u64(u64), serialize_f32(f32), serialize_f64(f64), serialize_char(char),
        serialize_str(&str), serialize_bytes(&[u8]), serialize_none(), serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    }

    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<(), serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &V,
    ) -> Result<(), serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, serde_json::Error> {
        Err(serde::ser::Error::custom("not a record"))
    }
}

/// Read back what [`to_fields`] stored (and the hand-written forms before it: the same text
/// per field, `null` or empty for an absent option). A field a newer build added is absent
/// from models an older build stored: mark it `#[serde(default)]` (an `Option` needs nothing).
pub fn from_fields<T: DeserializeOwned>(
    stored: &BTreeMap<String, String>,
) -> Result<T, FieldError> {
    read(
        stored
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    )
}

/// As [`from_fields`], with `field` read as `value` whatever is stored: a view's id is its
/// stream's, never trusted from storage.
pub fn from_fields_with<T: DeserializeOwned>(
    stored: &BTreeMap<String, String>,
    field: &str,
    value: &str,
) -> Result<T, FieldError> {
    read(
        stored
            .iter()
            .filter(|(name, _)| name.as_str() != field)
            .map(|(name, text)| (name.as_str(), text.as_str()))
            .chain([(field, value)]),
    )
}

fn read<'de, T: DeserializeOwned>(
    fields: impl Iterator<Item = (&'de str, &'de str)>,
) -> Result<T, FieldError> {
    let failed = std::cell::Cell::new(None);
    T::deserialize(Stored {
        fields,
        failed: &failed,
    })
    .map_err(|error: TextError| FieldError {
        // The type's own name for the field that failed, when it is one of its fields.
        field: failed.get().unwrap_or("stored form"),
        reason: error.0,
    })
}

/// A stored form as a record: its fields, in turn.
struct Stored<'f, I> {
    fields: I,
    failed: &'f std::cell::Cell<Option<&'static str>>,
}

struct Attributes<'de, 'f, I> {
    fields: I,
    names: &'static [&'static str],
    value: Option<(&'de str, &'de str)>,
    failed: &'f std::cell::Cell<Option<&'static str>>,
}

impl<'de, I: Iterator<Item = (&'de str, &'de str)>> serde::de::MapAccess<'de>
    for Attributes<'de, '_, I>
{
    type Error = TextError;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TextError> {
        let Some((name, text)) = self.fields.next() else {
            return Ok(None);
        };
        self.value = Some((name, text));
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TextError> {
        let (name, text) = self
            .value
            .take()
            .ok_or_else(|| TextError("a value without its field".into()))?;
        seed.deserialize(Text(text)).inspect_err(|_| {
            let known = self.names.iter().find(|known| **known == name).copied();
            self.failed.set(known);
        })
    }
}

impl<'de, I: Iterator<Item = (&'de str, &'de str)>> serde::Deserializer<'de> for Stored<'_, I> {
    type Error = TextError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        self.deserialize_struct("", &[], visitor)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        names: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TextError> {
        visitor.visit_map(Attributes {
            fields: self.fields,
            names,
            value: None,
            failed: self.failed,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// One stored field's text, read as whatever its attribute's type asks for.
struct Text<'a>(&'a str);

#[derive(Debug)]
struct TextError(String);

impl std::fmt::Display for TextError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

impl serde::de::Error for TextError {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Self(message.to_string())
    }
}

impl<'de> serde::de::IntoDeserializer<'de, TextError> for Text<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl Text<'_> {
    /// The text as JSON: numbers, booleans, lists, records.
    fn json(&self) -> Result<serde_json::Value, TextError> {
        serde_json::from_str(self.0)
            .map_err(|e| TextError(format!("{:?} is not what the field holds: {e}", self.0)))
    }
}

macro_rules! as_json {
    ($($method:ident)*) => {$(
        fn $method<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, TextError> {
            self.json()?.$method(visitor).map_err(|e| TextError(e.to_string()))
        }
    )*};
}

impl<'de> serde::Deserializer<'de> for Text<'de> {
    type Error = TextError;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        match self.json() {
            Ok(value) => value
                .deserialize_any(visitor)
                .map_err(|e| TextError(e.to_string())),
            Err(_) => visitor.visit_str(self.0),
        }
    }

    fn deserialize_str<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_string<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_char<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_identifier<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        match self.0 {
            "" | "null" => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TextError> {
        // A unit variant is stored as its bare name; any other as JSON.
        if self.0.starts_with(['{', '"']) {
            self.json()?
                .deserialize_enum(name, variants, visitor)
                .map_err(|e| TextError(e.to_string()))
        } else {
            visitor.visit_enum(serde::de::value::BorrowedStrDeserializer::new(self.0))
        }
    }

    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        self.json()?
            .deserialize_unit_struct(name, visitor)
            .map_err(|e| TextError(e.to_string()))
    }

    fn deserialize_tuple<V: serde::de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        self.json()?
            .deserialize_tuple(len, visitor)
            .map_err(|e| TextError(e.to_string()))
    }

    fn deserialize_tuple_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TextError> {
        self.json()?
            .deserialize_tuple_struct(name, len, visitor)
            .map_err(|e| TextError(e.to_string()))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TextError> {
        self.json()?
            .deserialize_struct(name, fields, visitor)
            .map_err(|e| TextError(e.to_string()))
    }

    as_json! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
        deserialize_ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mood {
        Calm,
        Busy,
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Model {
        name: String,
        count: u64,
        tags: Vec<String>,
        since: Option<chrono::NaiveDate>,
        mood: Mood,
        #[serde(default)]
        added_later: u32,
    }

    fn stored(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_type_round_trips_through_its_stored_form_in_plain_text() {
        let model = Model {
            name: "42".into(),
            count: 7,
            tags: vec!["a".into()],
            since: chrono::NaiveDate::from_ymd_opt(2026, 1, 2),
            mood: Mood::Busy,
            added_later: 3,
        };
        let fields = to_fields(&model);
        assert_eq!(
            fields,
            stored(&[
                ("name", "42"),
                ("count", "7"),
                ("tags", r#"["a"]"#),
                ("since", "2026-01-02"),
                ("mood", "busy"),
                ("added_later", "3"),
            ])
        );
        assert_eq!(from_fields::<Model>(&fields).unwrap(), model);
    }

    #[test]
    fn an_older_stored_form_reads_and_a_bad_field_is_an_error() {
        let old = stored(&[
            ("name", "Ann"),
            ("count", "1"),
            ("tags", "[]"),
            ("since", ""),
            ("mood", "calm"),
        ]);
        let model: Model = from_fields(&old).unwrap();
        assert_eq!((model.since, model.added_later), (None, 0));
        let bad = stored(&[
            ("name", "Ann"),
            ("count", "many"),
            ("tags", "[]"),
            ("mood", "calm"),
        ]);
        assert!(from_fields::<Model>(&bad).is_err());
    }
}
