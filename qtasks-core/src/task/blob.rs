//! [`Blob`]: a task argument of raw bytes that reaches the task body without a copy.
//!
//! A `Vec<u8>` or `String` parameter is copied out of the encoded arguments when the task
//! decodes them. A `Blob` is a reference-counted view into the very buffer the arguments were
//! encoded into: the bytes are copied once, by the producer's encoder, and never again on the
//! way to the body (on the memory backend the buffer itself travels; on Redis and PostgreSQL
//! the bytes the client read). Encoded as MessagePack `bin`.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Raw bytes as a task argument (or result), shared instead of copied: cloning a `Blob` and
/// decoding it from a task's arguments copy nothing.
///
/// ```
/// use qtasks_core::{Blob, Payload};
///
/// let image = Blob::from(vec![7u8; 64 * 1024]);
/// let encoded = Payload::encode(&(1u32, image.clone())).unwrap();
/// let (_, decoded): (u32, Blob) = encoded.decode().unwrap();
/// assert_eq!(decoded, image);
/// // A view into the encoded buffer, not a copy of it.
/// let range = encoded.as_bytes().as_ptr_range();
/// assert!(range.contains(&decoded.as_ptr()));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Blob(Bytes);

impl Blob {
    /// The bytes as a [`Bytes`] (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// A blob of `bytes` that live for the whole program (no copy).
    pub const fn from_static(bytes: &'static [u8]) -> Self {
        Blob(Bytes::from_static(bytes))
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Blob(Bytes::from(bytes))
    }
}

impl From<Bytes> for Blob {
    fn from(bytes: Bytes) -> Self {
        Blob(bytes)
    }
}

impl From<String> for Blob {
    fn from(text: String) -> Self {
        Blob(Bytes::from(text))
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

scoped_tls::scoped_thread_local! {
    /// The buffer [`Payload::decode`](crate::Payload::decode) is decoding, so that a `Blob`
    /// decoded from it can be a view into it instead of a copy. Lent, not cloned: every task's
    /// arguments are decoded here, and most have no `Blob` (a clone and its drop would be two
    /// atomic operations per task for nothing).
    static DECODING: Bytes
}

/// Runs `decode` with `source` as the buffer that blobs decoded meanwhile may point into.
pub(crate) fn decoding_from<T>(source: &Bytes, decode: impl FnOnce() -> T) -> T {
    DECODING.set(source, decode)
}

/// `bytes` as a view into the buffer being decoded when they lie in it, else a copy.
fn shared_or_copied(bytes: &[u8]) -> Blob {
    if DECODING.is_set() {
        let shared = DECODING.with(|source| {
            source
                .as_ptr_range()
                .contains(&bytes.as_ptr())
                .then(|| source.slice_ref(bytes))
        });
        if let Some(shared) = shared {
            return Blob(shared);
        }
    }
    Blob(Bytes::copy_from_slice(bytes))
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes (MessagePack bin), a string, or a list of numbers 0-255")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<Blob, E> {
        Ok(shared_or_copied(bytes))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Blob, E> {
        Ok(Blob(Bytes::copy_from_slice(bytes)))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob::from(bytes))
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Blob, E> {
        Ok(shared_or_copied(text.as_bytes()))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Blob, E> {
        Ok(Blob(Bytes::copy_from_slice(text.as_bytes())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
        // By-name calls from JSON send bytes as a list of numbers.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(Blob::from(out))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Blob, D::Error> {
        deserializer.deserialize_bytes(BlobVisitor)
    }
}
