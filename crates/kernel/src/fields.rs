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
