//! Building blocks of the in-memory encodings (commands, member contexts): a cursor
//! over `Bytes` that checks every length and count against the bytes that remain
//! before it takes or allocates anything, so decoding never panics and never
//! allocates more than a small constant factor of its input. Integers are
//! little-endian; byte strings are a u32 length followed by the bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::KvError;

/// Reads fields off the front of an encoded value.
pub(super) struct Cursor {
    bytes: Bytes,
}

impl Cursor {
    pub(super) fn new(bytes: Bytes) -> Cursor {
        Cursor { bytes }
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, KvError> {
        if self.bytes.remaining() < 1 {
            return Err(KvError::Truncated { what });
        }
        Ok(self.bytes.get_u8())
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, KvError> {
        if self.bytes.remaining() < 4 {
            return Err(KvError::Truncated { what });
        }
        Ok(self.bytes.get_u32_le())
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, KvError> {
        if self.bytes.remaining() < 8 {
            return Err(KvError::Truncated { what });
        }
        Ok(self.bytes.get_u64_le())
    }

    /// A length-prefixed byte string, shared with the input (no copy).
    pub(super) fn bytes(&mut self, what: &'static str) -> Result<Bytes, KvError> {
        let length = self.u32(what)? as usize;
        if length > self.bytes.remaining() {
            return Err(KvError::Truncated { what });
        }
        Ok(self.bytes.split_to(length))
    }

    /// A length-prefixed UTF-8 string.
    pub(super) fn string(&mut self, what: &'static str) -> Result<String, KvError> {
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| KvError::Malformed { what })
    }

    /// A u32 element count, checked against the bytes that remain: each element
    /// takes at least `min_element_bytes`, so a count the input cannot hold is an
    /// error before anything is allocated for it.
    pub(super) fn count(
        &mut self,
        what: &'static str,
        min_element_bytes: usize,
    ) -> Result<usize, KvError> {
        let count = self.u32(what)? as usize;
        if count.saturating_mul(min_element_bytes) > self.bytes.remaining() {
            return Err(KvError::Truncated { what });
        }
        Ok(count)
    }

    /// Succeeds only if every byte was consumed.
    pub(super) fn finish(self, what: &'static str) -> Result<(), KvError> {
        if self.bytes.has_remaining() {
            return Err(KvError::Malformed { what });
        }
        Ok(())
    }
}

/// Appends a u32 length and the bytes.
///
/// # Panics
///
/// If `bytes` is longer than `u32::MAX`: callers validate lengths first (keys are at
/// most 4096 bytes; values and addresses are bounded by the server's limits).
pub(super) fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("field longer than u32::MAX bytes");
    out.put_u32_le(length);
    out.put_slice(bytes);
}
