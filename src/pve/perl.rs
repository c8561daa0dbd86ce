//! Lenient serde decoders for Perl-typed Proxmox values: integers that arrive as strings,
//! booleans as `0`/`1`/`""`/`"yes"`/`true`, floats as strings. Use with
//! `#[serde(default, deserialize_with = "perl::opt_u64")]`.
//!
//! Every helper decodes through `serde_json::Value` (we only ever decode JSON), which keeps
//! each one a small pure conversion function that is unit-tested below.

use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::Value;

/// Convert a JSON value to an unsigned integer (number, integral float or numeric string).
pub fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
        }
        Value::Bool(b) => Some(*b as u64),
        _ => None,
    }
}

/// Convert a JSON value to a signed integer.
pub fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Bool(b) => Some(*b as i64),
        _ => None,
    }
}

/// Convert a JSON value to a float.
pub fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        Value::Bool(b) => Some(*b as u8 as f64),
        _ => None,
    }
}

/// Convert a JSON value to a boolean the way Perl/Proxmox does: 0/1, "0"/"1", "" (false),
/// true/false, yes/no, on/off.
pub fn value_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" | "" => Some(false),
            _ => None,
        },
        Value::Null => Some(false),
        _ => None,
    }
}

/// Convert a JSON value to a string (numbers are formatted; null is none).
pub fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1".into() } else { "0".into() }),
        _ => None,
    }
}

fn decode<'de, D, T>(d: D, what: &str, f: fn(&Value) -> Option<T>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Value::deserialize(d)?;
    f(&v).ok_or_else(|| D::Error::custom(format!("expected {what}, got {v}")))
}

fn decode_opt<'de, D, T>(d: D, what: &str, f: fn(&Value) -> Option<T>) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        _ => f(&v).map(Some).ok_or_else(|| D::Error::custom(format!("expected {what}, got {v}"))),
    }
}

/// `u64` from a number or numeric string.
pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    decode(d, "an unsigned integer", value_u64)
}
/// Optional `u64` (null or "" is `None`).
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    decode_opt(d, "an unsigned integer", value_u64)
}
/// `i64` from a number or numeric string.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    decode(d, "an integer", value_i64)
}
/// Optional `i64`.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    decode_opt(d, "an integer", value_i64)
}
/// `f64` from a number or numeric string.
pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    decode(d, "a number", value_f64)
}
/// Optional `f64`.
pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    decode_opt(d, "a number", value_f64)
}
/// Perl boolean.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    decode(d, "a boolean (0/1)", value_bool)
}
/// Optional Perl boolean (null is `None`, "" is `Some(false)`).
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    value_bool(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a boolean (0/1), got {v}")))
}
/// String from a string or number.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    decode(d, "a string", value_string)
}
/// Optional string from a string or number.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    value_string(&v)
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a string, got {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "u64")]
        a: u64,
        #[serde(default, deserialize_with = "opt_u64")]
        b: Option<u64>,
        #[serde(default, deserialize_with = "bool")]
        c: bool,
        #[serde(default, deserialize_with = "opt_f64")]
        d: Option<f64>,
    }

    #[test]
    fn lenient_values() {
        let t: T = serde_json::from_value(json!({"a":"100","b":"","c":"yes","d":"0.5","zzz":1})).unwrap();
        assert_eq!((t.a, t.b, t.c, t.d), (100, None, true, Some(0.5)));
        let t: T = serde_json::from_value(json!({"a":7,"b":8,"c":"","d":1})).unwrap();
        assert_eq!((t.a, t.b, t.c, t.d), (7, Some(8), false, Some(1.0)));
        let t: T = serde_json::from_value(json!({"a":7.0,"c":1})).unwrap();
        assert_eq!((t.a, t.b, t.c), (7, None, true));
        assert!(serde_json::from_value::<T>(json!({"a":"x"})).is_err());
        assert!(serde_json::from_value::<T>(json!({"a":1,"c":"maybe"})).is_err());
        assert_eq!(value_bool(&json!("off")), Some(false));
        assert_eq!(value_bool(&json!("ON")), Some(true));
        assert_eq!(value_i64(&json!("-3")), Some(-3));
        assert_eq!(value_string(&json!(5)), Some("5".into()));
    }
}
