//! [`ExtraValue`]: the value of an extra `key = literal` of a task's attribute (the seeds'
//! `**kwargs`, kept as the task's `extra`), with the literal's type.

use std::fmt;

use serde::{Serialize, Serializer};

/// The value of an extra `key = literal` pair of `#[qtasks::task(..)]`, typed as written:
/// `team = "core"` is a [`Str`](ExtraValue::Str), `level = 3` an [`Int`](ExtraValue::Int),
/// `ratio = 0.5` a [`Float`](ExtraValue::Float), `on = true` a [`Bool`](ExtraValue::Bool).
///
/// Read it with the accessors (`as_int`, ..), compare it with a plain value (`v == 3`,
/// `v == "core"`), or print it (`Display` writes the value as written, strings unquoted).
/// It serializes as the plain value, so `inspect --json` shows `"level": 3`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExtraValue {
    /// A string literal: `team = "core"`.
    Str(&'static str),
    /// An integer literal: `level = 3`, `offset = -2`.
    Int(i64),
    /// A float literal: `ratio = 0.5`.
    Float(f64),
    /// A bool literal: `on = true`.
    Bool(bool),
}

impl ExtraValue {
    /// The string, for a [`Str`](ExtraValue::Str).
    pub fn as_str(&self) -> Option<&'static str> {
        match self {
            ExtraValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, for an [`Int`](ExtraValue::Int).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            ExtraValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number, for a [`Float`](ExtraValue::Float) or an [`Int`](ExtraValue::Int).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            ExtraValue::Float(f) => Some(*f),
            ExtraValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The bool, for a [`Bool`](ExtraValue::Bool).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ExtraValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// What kind of literal it is: `"string"`, `"integer"`, `"float"` or `"bool"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ExtraValue::Str(_) => "string",
            ExtraValue::Int(_) => "integer",
            ExtraValue::Float(_) => "float",
            ExtraValue::Bool(_) => "bool",
        }
    }
}

impl fmt::Display for ExtraValue {
    /// The value as written: `core` (unquoted), `3`, `0.5` (a float keeps its point: `1.0`),
    /// `true`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtraValue::Str(s) => f.write_str(s),
            ExtraValue::Int(i) => write!(f, "{i}"),
            ExtraValue::Float(x) => write!(f, "{x:?}"),
            ExtraValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Serialize for ExtraValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExtraValue::Str(v) => s.serialize_str(v),
            ExtraValue::Int(i) => s.serialize_i64(*i),
            ExtraValue::Float(x) => s.serialize_f64(*x),
            ExtraValue::Bool(b) => s.serialize_bool(*b),
        }
    }
}

impl PartialEq<str> for ExtraValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for ExtraValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<i64> for ExtraValue {
    fn eq(&self, other: &i64) -> bool {
        self.as_int() == Some(*other)
    }
}

impl PartialEq<f64> for ExtraValue {
    fn eq(&self, other: &f64) -> bool {
        matches!(self, ExtraValue::Float(x) if x == other)
    }
}

impl PartialEq<bool> for ExtraValue {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

#[cfg(test)]
mod tests {
    use super::ExtraValue;

    #[test]
    fn values_keep_their_type_and_print_as_written() {
        let values = [
            ExtraValue::Str("core"),
            ExtraValue::Int(-3),
            ExtraValue::Float(1.0),
            ExtraValue::Bool(true),
        ];
        let shown: Vec<String> = values.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["core", "-3", "1.0", "true"]);
        assert_eq!(
            serde_json::to_string(&values).unwrap(),
            r#"["core",-3,1.0,true]"#
        );
        assert_eq!(values[0], "core");
        assert_eq!(values[1], -3);
        assert_eq!(values[1].as_float(), Some(-3.0));
        assert_eq!(values[2], 1.0);
        assert_eq!(values[3], true);
        assert_eq!(values[3].as_str(), None);
        assert_eq!(values[2].kind(), "float");
    }
}
