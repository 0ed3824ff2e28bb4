//! [`Payload`]: encoded arguments and results (MessagePack, arguments as a named map).

use std::cell::RefCell;
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
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                let encoded = rmp_serde::encode::write_named(&mut *buf, value)
                    .map(|()| Payload::from_encoded(&buf));
                if buf.capacity() > SCRATCH_KEEP {
                    *buf = Vec::new();
                }
                encoded
            }
            // A `Serialize` impl that encodes a payload itself: a buffer of its own.
            Err(_) => {
                let mut buf = Vec::new();
                rmp_serde::encode::write_named(&mut buf, value)?;
                Ok(Payload::from_encoded(&buf))
            }
        })
    }

    /// Copies freshly encoded bytes into one allocation (see [`INLINE`]).
    fn from_encoded(encoded: &[u8]) -> Self {
        if encoded.len() <= INLINE {
            let mut data = [0; INLINE];
            data[..encoded.len()].copy_from_slice(encoded);
            Payload(Bytes::from_owner(Inline {
                len: encoded.len() as u8,
                data,
            }))
        } else {
            Payload(Bytes::copy_from_slice(encoded))
        }
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

/// Payloads up to this many bytes (most arguments and results) live inside the one
/// reference-counted block that [`Bytes::from_owner`] allocates. Encoding into a `Vec` and
/// wrapping it cost two allocations per payload: the vector, and the shared header `Bytes` adds
/// for a vector with spare capacity (or on the first clone of an exact one).
const INLINE: usize = 55;

/// The owner of a small payload's bytes.
struct Inline {
    len: u8,
    data: [u8; INLINE],
}

impl AsRef<[u8]> for Inline {
    fn as_ref(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

/// A scratch buffer larger than this is not kept for the next encode.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    /// Where [`Payload::encode`] writes before copying the bytes to their final place.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_json() {
            Some(v) => write!(f, "{v}"),
            None => write!(f, "<{} raw bytes>", self.0.len()),
        }
    }
}
