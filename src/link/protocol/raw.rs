//! JSON the master sends that det-agent carries but does not read (a container's `Spec`,
//! the master's `LoggingOptions`), kept as the text it was sent as.
//!
//! serde_json's `Value` costs several times its text in memory (a `0` in an array is 32
//! bytes of `Value`, plus the array's spare capacity), and a frame may be as large as
//! `max_message_size` (128 MiB by default), so a hostile frame parsed into a `Value`
//! could take gigabytes. Kept as text, a value costs what was sent, once.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON value exactly as sent.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// `null`.
    pub fn null() -> RawJson {
        // "null" is valid JSON.
        RawJson(RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!()))
    }

    /// The value written as JSON (for the dev master and tests).
    ///
    /// # Errors
    /// `value` cannot be serialized (a map with non-string keys).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<RawJson> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// The JSON text as sent.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Reads the value as a `T`.
    ///
    /// # Errors
    /// The value does not have `T`'s shape.
    pub fn parse<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.0.get() == "null"
    }
}

impl Default for RawJson {
    fn default() -> RawJson {
        RawJson::null()
    }
}

/// Equal when the texts are: the same value written differently (spacing, key order)
/// compares unequal, which is what carrying it unchanged needs.
impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({} bytes)", self.get().len())
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawJson, D::Error> {
        Box::<RawValue>::deserialize(d).map(RawJson)
    }
}
