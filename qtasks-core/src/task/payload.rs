//! [`Payload`]: encoded arguments and results (MessagePack, arguments as a named map).

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::task::blob::decoding_from;

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
                rmp_serde::encode::write_named(&mut *buf, value)?;
                if buf.len() > HAND_OVER {
                    // A large payload keeps the buffer it was encoded into: its bytes are
                    // copied once, by the encoder, never again (shrinking shortens the block in
                    // place). The next encode starts a new buffer.
                    let mut owned = std::mem::take(&mut *buf);
                    owned.shrink_to_fit();
                    return Ok(Payload(Bytes::from(owned)));
                }
                Ok(Payload::from_encoded(&buf))
            }
            // A `Serialize` impl that encodes a payload itself: a buffer of its own.
            Err(_) => {
                let mut buf = Vec::new();
                rmp_serde::encode::write_named(&mut buf, value)?;
                Ok(Payload::from_encoded(&buf))
            }
        })
    }

    /// Copies freshly encoded bytes into one allocation (see [`INLINE`]); a one-byte value
    /// (`nil`, a boolean, a small integer, an empty map or list: most results) points into a
    /// static table instead, with no allocation.
    fn from_encoded(encoded: &[u8]) -> Self {
        if let [byte] = encoded {
            let at = usize::from(*byte);
            return Payload(Bytes::from_static(&ONE_BYTE[at..at + 1]));
        }
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
        // A `Blob` in `T` becomes a view into this buffer instead of a copy.
        decoding_from(&self.0, || rmp_serde::from_slice(&self.0))
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

/// Every byte value, for one-byte payloads.
static ONE_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i as u8;
        i += 1;
    }
    table
};

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

/// An encoded payload longer than this takes the scratch buffer with it instead of being
/// copied out of it (below, a copy is cheaper than a new buffer for the next encode).
const HAND_OVER: usize = 1024;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::blob::Blob;

    #[test]
    fn a_decoded_blob_shares_the_payload_buffer() {
        let big = Blob::from(vec![1u8; 4096]);
        let payload = Payload::encode(&big).unwrap();
        let decoded: Blob = payload.decode().unwrap();
        assert_eq!(decoded, big);
        assert!(payload
            .as_bytes()
            .as_ptr_range()
            .contains(&decoded.as_ptr()));
    }

    #[test]
    fn blobs_decode_from_strings_and_number_lists() {
        let from_text: Blob = Payload::encode("abc").unwrap().decode().unwrap();
        assert_eq!(&*from_text, b"abc");
        let from_list: Blob = Payload::encode(&[1u8, 2, 255]).unwrap().decode().unwrap();
        assert_eq!(&*from_list, [1, 2, 255]);
        let not_bytes = Payload::encode(&[1000u32]).unwrap().decode::<Blob>();
        assert!(not_bytes.is_err());
    }

    #[test]
    fn one_byte_values_round_trip_from_the_static_table() {
        assert_eq!(Payload::encode(&()).unwrap().as_bytes(), [0xc0]);
        assert_eq!(Payload::encode(&7u32).unwrap().as_bytes(), [7]);
        assert!(Payload::encode(&true).unwrap().decode::<bool>().unwrap());
        assert_eq!(Payload::encode(&-3i8).unwrap().decode::<i8>().unwrap(), -3);
        let empty: Vec<u8> = Payload::encode(&Vec::<u8>::new())
            .unwrap()
            .decode()
            .unwrap();
        assert!(empty.is_empty());
        // Longer values are copied as before.
        let text = Payload::encode(&"hello").unwrap();
        assert_eq!(text.decode::<String>().unwrap(), "hello");
    }

    #[test]
    fn large_payloads_keep_their_encoding_buffer_and_the_next_encode_gets_a_new_one() {
        let big = "x".repeat(64 * 1024);
        let first = Payload::encode(&big).unwrap();
        let second = Payload::encode(&big).unwrap();
        assert_ne!(
            first.as_bytes().as_ptr(),
            second.as_bytes().as_ptr(),
            "each large payload owns its buffer"
        );
        assert_eq!(first.decode::<String>().unwrap(), big);
        assert_eq!(second, first);
        // Small ones after a large one still encode through the scratch buffer.
        assert_eq!(
            Payload::encode(&"small")
                .unwrap()
                .decode::<String>()
                .unwrap(),
            "small"
        );
    }
}
