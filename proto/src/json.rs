//! [`Json`]: a JSON value kept as its text, shared, never changed.
//!
//! An operation's plan and result can be large (a prune plan of 10,000
//! backups is ~2 MB of JSON). The daemon keeps them for `op.get`/`op.watch`,
//! sends them in events and in the answer, and writes them to the operations
//! log. As a [`serde_json::Value`] each copy of such a plan is ~10 times its
//! text in small allocations; as a `Json` it is serialized once, every copy is
//! a reference count, and writing it out is a copy of its bytes.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON value as its (compact) text. Cloning it is cheap; it compares by
/// its text.
#[derive(Clone)]
pub struct Json(Arc<RawValue>);

impl Json {
    /// `value` serialized. Serializing the types of this crate cannot fail (no
    /// map has a key that is not a string); if one ever did, the value is
    /// `null`.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Json {
        serde_json::value::to_raw_value(value).map_or_else(|_| Json::null(), Json::from)
    }

    /// `null`.
    pub fn null() -> Json {
        Json::from(RawValue::NULL.to_owned())
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.get() == "null"
    }

    /// The text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Read it as a `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.get())
    }

    /// As a [`Value`] (a copy that can be changed).
    pub fn to_value(&self) -> Value {
        self.decode().unwrap_or(Value::Null)
    }

    /// The raw value, for a serializer.
    pub fn raw(&self) -> &RawValue {
        &self.0
    }
}

impl From<Box<RawValue>> for Json {
    fn from(raw: Box<RawValue>) -> Json {
        Json(Arc::from(raw))
    }
}

impl From<Value> for Json {
    fn from(value: Value) -> Json {
        Json::new(&value)
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Json {
        Json::new(value)
    }
}

impl Default for Json {
    fn default() -> Json {
        Json::null()
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.get() == other.get()
    }
}

impl PartialEq<Value> for Json {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Json {
    /// Through a [`Value`]: a raw value can only be read straight from
    /// serde_json's reader, and an event is read through serde's buffer (it
    /// is tagged by a field).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        Value::deserialize(d).map(Json::from)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trips_and_shares_its_text() {
        let value = json!({"plan": {"backups": [1, 2, {"id": "a\"b"}]}, "n": null});
        let j = Json::new(&value);
        assert_eq!(j.to_value(), value);
        assert_eq!(j, value);
        let again: Json = serde_json::from_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(again, j);
        let copy = j.clone();
        assert!(std::ptr::eq(copy.get(), j.get()), "a clone shares the text");
        // Inside another value it is written as it is, not as a string.
        let outer = serde_json::to_value(json!({"x": 1})).unwrap();
        let both = serde_json::to_string(&(&outer, &j)).unwrap();
        assert_eq!(both, format!("[{{\"x\":1}},{}]", j.get()));
        assert!(Json::null().is_null() && !j.is_null());
        #[derive(Deserialize)]
        struct Plan {
            plan: Value,
        }
        assert_eq!(j.decode::<Plan>().unwrap().plan["backups"][0], 1);
    }

    #[test]
    fn reads_inside_a_tagged_enum_and_from_a_value() {
        #[derive(Debug, Deserialize)]
        #[serde(tag = "event", rename_all = "snake_case")]
        enum E {
            Finished { result: Json },
        }
        let text = r#"{"event": "finished", "result": {"a": [1]}}"#;
        let E::Finished { result } = serde_json::from_str::<E>(text).unwrap();
        assert_eq!(result.get(), r#"{"a":[1]}"#);
        let E::Finished { result } =
            serde_json::from_value::<E>(json!({"event": "finished", "result": 2})).unwrap();
        assert_eq!(result.get(), "2");
    }
}
