//! [`Payload`]: encoded arguments and results (MessagePack, arguments as a named map).

use std::fmt;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Encoded bytes of a task's arguments or result, in MessagePack.
///
/// Arguments are a named map (`{"a": 2, "b": 3}`); a positional array is accepted too and is
/// matched to the parameters in order. Cloning is cheap (reference counted).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Bytes);

impl Payload {
    /// Encodes a value (structs as named maps).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, rmp_serde::encode::Error> {
        // Most payloads are small: one allocation of this size avoids the growth steps.
        let mut buf = Vec::with_capacity(64);
        rmp_serde::encode::write_named(&mut buf, value)?;
        Ok(Payload(Bytes::from(buf)))
    }

    /// Decodes the payload into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, rmp_serde::decode::Error> {
        rmp_serde::from_slice(&self.0)
    }

    /// Wraps raw bytes (for backends reading what they stored).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        Payload(bytes.into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The raw bytes, shared.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The payload as JSON, for people and for the CLI. `None` when it is not valid MessagePack.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        self.decode::<serde_json::Value>().ok()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_json() {
            Some(v) => write!(f, "{v}"),
            None => write!(f, "<{} raw bytes>", self.0.len()),
        }
    }
}
