//! A minimal DER reader and writer: just what an X.509 certificate of the libp2p TLS
//! handshake needs, no more.
//!
//! The reader walks a byte slice one TLV (tag, length, value) at a time and never copies:
//! every value is a sub-slice of the input. Lengths are checked against the bytes actually
//! there before anything is sliced, long-form lengths are at most four bytes, tags are
//! single-byte (X.509 needs no others) and the indefinite length form, which DER forbids,
//! is refused. Nothing here recurses on the input's structure: callers descend by hand into
//! the fixed shape they expect, so a hostile certificate cannot make the parser go deep.

use super::CertError;

/// `SEQUENCE` (constructed).
pub(crate) const SEQUENCE: u8 = 0x30;
/// `SET` (constructed).
pub(crate) const SET: u8 = 0x31;
/// `INTEGER`.
pub(crate) const INTEGER: u8 = 0x02;
/// `BIT STRING`.
pub(crate) const BIT_STRING: u8 = 0x03;
/// `OCTET STRING`.
pub(crate) const OCTET_STRING: u8 = 0x04;
/// `OBJECT IDENTIFIER`.
pub(crate) const OID: u8 = 0x06;
/// `BOOLEAN`.
pub(crate) const BOOLEAN: u8 = 0x01;
/// `UTF8String`.
pub(crate) const UTF8_STRING: u8 = 0x0c;
/// `UTCTime`.
pub(crate) const UTC_TIME: u8 = 0x17;
/// `GeneralizedTime`.
pub(crate) const GENERALIZED_TIME: u8 = 0x18;

/// A cursor over DER-encoded bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Der<'a> {
    data: &'a [u8],
}

/// One element: its tag, its contents, and its whole encoding (tag and length included).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub(crate) tag: u8,
    pub(crate) value: &'a [u8],
    pub(crate) raw: &'a [u8],
}

impl<'a> Der<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next element's tag without consuming it.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads the next element, whatever its tag.
    pub(crate) fn any(&mut self, field: &'static str) -> Result<Tlv<'a>, CertError> {
        let bad = |reason: &'static str| CertError::Der { field, reason };
        let (&tag, rest) = self.data.split_first().ok_or(bad("missing"))?;
        if tag & 0x1f == 0x1f {
            return Err(bad("multi-byte tags are not used in certificates"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(bad("truncated length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(bad("indefinite length is not DER"));
            }
            if n > 4 {
                return Err(bad("length of more than four bytes"));
            }
            if rest.len() < n {
                return Err(bad("truncated length"));
            }
            let (bytes, after) = rest.split_at(n);
            rest = after;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if len > rest.len() {
            return Err(bad("length runs past the end of the data"));
        }
        let header = self.data.len() - rest.len();
        let raw = &self.data[..header + len];
        let value = &rest[..len];
        self.data = &rest[len..];
        Ok(Tlv { tag, value, raw })
    }

    /// Reads the next element, which must have tag `tag`.
    pub(crate) fn expect(&mut self, tag: u8, field: &'static str) -> Result<Tlv<'a>, CertError> {
        let tlv = self.any(field)?;
        if tlv.tag != tag {
            return Err(CertError::Der {
                field,
                reason: "unexpected tag",
            });
        }
        Ok(tlv)
    }

    /// Reads a constructed element of tag `tag` and returns a cursor over its contents.
    pub(crate) fn nested(&mut self, tag: u8, field: &'static str) -> Result<Der<'a>, CertError> {
        Ok(Der::new(self.expect(tag, field)?.value))
    }

    /// Reads the next element if it has tag `tag`.
    pub(crate) fn optional(
        &mut self,
        tag: u8,
        field: &'static str,
    ) -> Result<Option<Tlv<'a>>, CertError> {
        if self.peek_tag() == Some(tag) {
            return self.expect(tag, field).map(Some);
        }
        Ok(None)
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self, field: &'static str) -> Result<(), CertError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(CertError::Der {
                field,
                reason: "trailing bytes",
            })
        }
    }
}

/// The contents of a BIT STRING with no unused bits (keys and signatures always are).
pub(crate) fn bit_string_bytes<'a>(
    tlv: Tlv<'a>,
    field: &'static str,
) -> Result<&'a [u8], CertError> {
    match tlv.value.split_first() {
        Some((0, bytes)) => Ok(bytes),
        _ => Err(CertError::Der {
            field,
            reason: "bit string with unused bits",
        }),
    }
}

/// Appends `tag`, the DER length of `content` and `content` to `out`.
pub(crate) fn write(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// `tag` around the concatenation of `parts`.
pub(crate) fn wrap(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let content = parts.concat();
    let mut out = Vec::with_capacity(content.len() + 6);
    write(&mut out, tag, &content);
    out
}

/// A BIT STRING holding `bytes` whole.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    wrap(BIT_STRING, &[&content])
}

/// Seconds since the Unix epoch of a UTCTime or GeneralizedTime in the `…Z` form X.509
/// requires.
pub(crate) fn time(tlv: Tlv<'_>, field: &'static str) -> Result<i64, CertError> {
    let bad = |reason: &'static str| CertError::Der { field, reason };
    let text = tlv.value;
    let (year, rest) = match tlv.tag {
        UTC_TIME if text.len() == 13 => {
            let yy = digits(&text[..2]).ok_or(bad("not a time"))?;
            // RFC 5280: YY >= 50 is 19YY, else 20YY.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 15 => {
            (digits(&text[..4]).ok_or(bad("not a time"))?, &text[4..])
        }
        _ => return Err(bad("not a UTCTime or GeneralizedTime in the Z form")),
    };
    if rest.last() != Some(&b'Z') {
        return Err(bad("time is not in UTC (Z)"));
    }
    let field2 = |i: usize| digits(&rest[i..i + 2]).ok_or(bad("not a time"));
    let (month, day, hour, minute, second) =
        (field2(0)?, field2(2)?, field2(4)?, field2(6)?, field2(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad("time out of range"));
    }
    if second > 60 {
        return Err(bad("time out of range"));
    }
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian; Howard Hinnant's method).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_convert_to_unix_seconds() {
        let utc = Tlv {
            tag: UTC_TIME,
            value: b"750101130000Z",
            raw: &[],
        };
        assert_eq!(time(utc, "t").expect("utc"), 157_813_200);
        let gen = Tlv {
            tag: GENERALIZED_TIME,
            value: b"20240229000000Z",
            raw: &[],
        };
        assert_eq!(time(gen, "t").expect("gen"), 1_709_164_800);
        let bad = Tlv {
            tag: UTC_TIME,
            value: b"7501011300000",
            raw: &[],
        };
        assert!(time(bad, "t").is_err());
    }

    #[test]
    fn lengths_are_checked_before_slicing() {
        // A SEQUENCE announcing 2^32-1 bytes with three present.
        let mut d = Der::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(d.any("x").is_err());
        let mut d = Der::new(&[0x30, 0x80, 0, 0]);
        assert!(d.any("x").is_err());
        let mut d = Der::new(&[0x30, 0x85, 0, 0, 0, 0, 1]);
        assert!(d.any("x").is_err());
        let mut d = Der::new(&[0x1f, 0x01, 0]);
        assert!(d.any("x").is_err());
    }

    #[test]
    fn written_lengths_read_back() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let mut out = Vec::new();
            write(&mut out, OCTET_STRING, &content);
            let mut d = Der::new(&out);
            let tlv = d.expect(OCTET_STRING, "x").expect("reads back");
            assert_eq!(tlv.value.len(), len);
            assert_eq!(tlv.raw.len(), out.len());
            assert!(d.is_empty());
        }
    }
}
