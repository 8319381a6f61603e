//! A cursor over the bytes of one message being decoded, shared by the binary codecs of
//! our own protocols (broadcast, route, relay).
//!
//! Every read is bounds-checked and names the field it was reading, so a short or
//! malformed message becomes a typed error of the calling codec (each converts
//! [`ReadError`] into its own), never a panic. Nothing here allocates.

use crate::varint;

/// Why a field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The message ended inside this field.
    Truncated(&'static str),
    /// This field's varint is overlong or not minimal.
    Varint(&'static str),
}

/// Reads fields off the front of a message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// How many bytes have been read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ReadError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(ReadError::Truncated(what))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ReadError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian u64.
    pub(crate) fn u64_be(&mut self, what: &'static str) -> Result<u64, ReadError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(bytes))
    }

    /// An unsigned varint.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, ReadError> {
        match varint::decode(&self.buf[self.pos..]) {
            Ok(Some((value, used))) => {
                self.pos += used;
                Ok(value)
            }
            Ok(None) => Err(ReadError::Truncated(what)),
            Err(_) => Err(ReadError::Varint(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded_and_named() {
        let mut r = Reader::new(&[7, 0, 0, 0, 0, 0, 0, 0, 9, 0xac, 0x02, 0x80]);
        assert_eq!(r.u8("a"), Ok(7));
        assert_eq!(r.u64_be("b"), Ok(9));
        assert_eq!(r.varint("c"), Ok(300));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.varint("d"), Err(ReadError::Truncated("d")));
        assert_eq!(r.take(2, "e"), Err(ReadError::Truncated("e")));
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint("f"),
            Err(ReadError::Varint("f"))
        );
    }
}
