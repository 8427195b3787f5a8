//! One table per aggregate's events.
//!
//! Each payload struct says its own type name, schema version, category and how older
//! versions upcast ([`EventPayload`]); [`domain_events!`](crate::domain_events) builds the
//! aggregate's event enum from the list of payloads and implements [`DomainEvent`] for it,
//! so every mapping (type name, category, version, decoding) comes from that one list and
//! the compiler checks it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{DecodeError, EncodeError};
use crate::{AggregateType, Category};

/// One event type's payload: its stored name, schema version, category, and upcasting.
pub trait EventPayload: Serialize + DeserializeOwned {
    /// The type name stored beside the payload (`type` in a stream entry). Never change it.
    const TYPE: &'static str;
    /// The version [`encode`](crate::codec::encode) writes. Raise it when a change is not
    /// just an added optional field, and upcast the older versions.
    const SCHEMA_VERSION: u16 = 1;
    /// The category stream events of this type are published to.
    const CATEGORY: Category;

    /// A payload stored at an older schema version (1 to `SCHEMA_VERSION - 1`) as the current
    /// type. `None`: this type has no such version.
    fn upcast(
        schema_version: u16,
        payload: &[u8],
    ) -> Option<Result<Self, rmp_serde::decode::Error>> {
        let _ = (schema_version, payload);
        None
    }
}

/// Everything that can happen to one aggregate type. Implemented by
/// [`domain_events!`](crate::domain_events); see that macro for an example.
pub trait DomainEvent: Serialize + Clone + std::fmt::Debug + Send + Sync + Sized + 'static {
    /// The aggregate whose streams hold these events.
    const AGGREGATE: AggregateType;
    /// The category streams these events go to.
    const CATEGORIES: &'static [Category];
    /// Every type name, for checks that no two collide.
    const TYPES: &'static [&'static str];

    fn event_type(&self) -> &'static str;
    fn category(&self) -> Category;
    fn schema_version(&self) -> u16;
    fn encode_payload(&self) -> Result<Vec<u8>, EncodeError>;
    /// Decode a stored payload, upcasting older schema versions.
    fn decode(event_type: &str, schema_version: u16, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// Builds an aggregate's event enum from its payload types and implements [`DomainEvent`].
///
/// ```
/// use esr_schema::{AggregateType, Category, DomainEvent, EventPayload, domain_events};
/// use serde::{Deserialize, Serialize};
///
/// const ORDERS: Category = Category::declare("orders");
///
/// #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// pub struct Placed { pub total_cents: u64 }
/// impl EventPayload for Placed {
///     const TYPE: &'static str = "placed";
///     const CATEGORY: Category = ORDERS;
/// }
///
/// domain_events! {
///     /// What happens to an order.
///     pub enum OrderEvent for AggregateType::declare("order"), categories [ORDERS] {
///         Placed(Placed),
///     }
/// }
///
/// let event = OrderEvent::Placed(Placed { total_cents: 250 });
/// let bytes = event.encode_payload()?;
/// assert_eq!(OrderEvent::decode("placed", 1, &bytes)?, event);
/// assert_eq!(event.category(), ORDERS);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! domain_events {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident for $aggregate:expr, categories [$($category:expr),* $(,)?] {
            $( $(#[$vmeta:meta])* $variant:ident($payload:ty) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, ::serde::Serialize)]
        #[serde(untagged)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant($payload) ),+
        }

        impl $crate::DomainEvent for $name {
            const AGGREGATE: $crate::AggregateType = $aggregate;
            const CATEGORIES: &'static [$crate::Category] = &[$($category),*];
            const TYPES: &'static [&'static str] =
                &[$(<$payload as $crate::EventPayload>::TYPE),+];

            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => <$payload as $crate::EventPayload>::TYPE ),+
                }
            }

            fn category(&self) -> $crate::Category {
                match self {
                    $( Self::$variant(_) => <$payload as $crate::EventPayload>::CATEGORY ),+
                }
            }

            fn schema_version(&self) -> u16 {
                match self {
                    $( Self::$variant(_) => <$payload as $crate::EventPayload>::SCHEMA_VERSION ),+
                }
            }

            fn encode_payload(&self) -> ::std::result::Result<Vec<u8>, $crate::codec::EncodeError> {
                match self {
                    $( Self::$variant(p) => $crate::codec::encode_payload(p) ),+
                }
            }

            fn decode(
                event_type: &str,
                schema_version: u16,
                payload: &[u8],
            ) -> ::std::result::Result<Self, $crate::DecodeError> {
                $(
                    if event_type == <$payload as $crate::EventPayload>::TYPE {
                        return $crate::codec::decode_payload::<$payload>(schema_version, payload)
                            .map(Self::$variant);
                    }
                )+
                Err($crate::DecodeError::UnknownType(event_type.to_owned()))
            }
        }

        $(
            impl From<$payload> for $name {
                fn from(payload: $payload) -> Self {
                    Self::$variant(payload)
                }
            }
        )+
    };
}
