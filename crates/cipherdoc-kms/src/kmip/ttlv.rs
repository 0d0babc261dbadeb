//! KMIP TTLV (tag, type, length, value) encoding.
//!
//! Hand-written: the Rust KMIP crates on crates.io are either unmaintained,
//! tied to one vendor's server, or pull in a whole KMS implementation; the
//! encoding itself is small (KMIP 1.x §9.1) and we use a handful of tags.

use std::fmt;

/// Tags used by the libmongocrypt flows (KMIP 1.0–1.4 spec, §9.1.3.1).
#[allow(missing_docs)]
pub mod tag {
    pub const ATTRIBUTE: u32 = 0x42_0008;
    pub const ATTRIBUTE_NAME: u32 = 0x42_000A;
    pub const ATTRIBUTE_VALUE: u32 = 0x42_000B;
    pub const BATCH_COUNT: u32 = 0x42_000D;
    pub const BATCH_ITEM: u32 = 0x42_000F;
    pub const BLOCK_CIPHER_MODE: u32 = 0x42_0011;
    pub const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x42_0028;
    pub const CRYPTOGRAPHIC_PARAMETERS: u32 = 0x42_002B;
    pub const IV_COUNTER_NONCE: u32 = 0x42_003D;
    pub const KEY_BLOCK: u32 = 0x42_0040;
    pub const KEY_FORMAT_TYPE: u32 = 0x42_0042;
    pub const KEY_MATERIAL: u32 = 0x42_0043;
    pub const KEY_VALUE: u32 = 0x42_0045;
    pub const OBJECT_TYPE: u32 = 0x42_0057;
    pub const OPERATION: u32 = 0x42_005C;
    pub const PADDING_METHOD: u32 = 0x42_005F;
    pub const PROTOCOL_VERSION: u32 = 0x42_0069;
    pub const PROTOCOL_VERSION_MAJOR: u32 = 0x42_006A;
    pub const PROTOCOL_VERSION_MINOR: u32 = 0x42_006B;
    pub const REQUEST_HEADER: u32 = 0x42_0077;
    pub const REQUEST_MESSAGE: u32 = 0x42_0078;
    pub const REQUEST_PAYLOAD: u32 = 0x42_0079;
    pub const RESPONSE_HEADER: u32 = 0x42_007A;
    pub const RESPONSE_MESSAGE: u32 = 0x42_007B;
    pub const RESPONSE_PAYLOAD: u32 = 0x42_007C;
    pub const RESULT_MESSAGE: u32 = 0x42_007D;
    pub const RESULT_REASON: u32 = 0x42_007E;
    pub const RESULT_STATUS: u32 = 0x42_007F;
    pub const SECRET_DATA: u32 = 0x42_0085;
    pub const SECRET_DATA_TYPE: u32 = 0x42_0086;
    pub const SYMMETRIC_KEY: u32 = 0x42_008F;
    pub const TEMPLATE_ATTRIBUTE: u32 = 0x42_0091;
    pub const UNIQUE_IDENTIFIER: u32 = 0x42_0094;
    pub const DATA: u32 = 0x42_00C2;
    pub const RANDOM_IV: u32 = 0x42_00C5;
}

/// A TTLV value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// 0x01
    Structure(Vec<Item>),
    /// 0x02, 4 bytes
    Integer(i32),
    /// 0x03, 8 bytes
    LongInteger(i64),
    /// 0x04, multiple of 8 bytes (kept raw)
    BigInteger(Vec<u8>),
    /// 0x05, 4 bytes
    Enumeration(u32),
    /// 0x06, 8 bytes
    Boolean(bool),
    /// 0x07
    TextString(String),
    /// 0x08
    ByteString(Vec<u8>),
    /// 0x09, 8 bytes (seconds since the epoch)
    DateTime(i64),
    /// 0x0A, 4 bytes
    Interval(u32),
}

/// A tagged TTLV item.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// The 3-byte tag.
    pub tag: u32,
    /// The value.
    pub value: Value,
}

// Byte strings may carry key material: print only lengths.
impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Structure(items) => f
                .debug_tuple(&format!("{:06X}", self.tag))
                .field(items)
                .finish(),
            Value::ByteString(b) => write!(f, "{:06X}(ByteString {} bytes)", self.tag, b.len()),
            Value::BigInteger(b) => write!(f, "{:06X}(BigInteger {} bytes)", self.tag, b.len()),
            Value::TextString(s) => write!(f, "{:06X}({s:?})", self.tag),
            Value::Integer(v) => write!(f, "{:06X}(Integer {v})", self.tag),
            Value::LongInteger(v) => write!(f, "{:06X}(LongInteger {v})", self.tag),
            Value::Enumeration(v) => write!(f, "{:06X}(Enum {v:#x})", self.tag),
            Value::Boolean(v) => write!(f, "{:06X}({v})", self.tag),
            Value::DateTime(v) => write!(f, "{:06X}(DateTime {v})", self.tag),
            Value::Interval(v) => write!(f, "{:06X}(Interval {v})", self.tag),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(
            &Item {
                tag: 0,
                value: self.clone(),
            },
            f,
        )
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if let Value::ByteString(b) = &mut self.value {
            zeroize::Zeroize::zeroize(b);
        }
    }
}

/// A decoding failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed TTLV at byte {offset}: {reason}")]
pub struct DecodeError {
    /// Offset of the offending item.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Structures nest at most this deep, so that hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 16;

impl Item {
    /// A structure.
    pub fn structure(tag: u32, items: Vec<Item>) -> Self {
        Self {
            tag,
            value: Value::Structure(items),
        }
    }
    /// An integer.
    pub fn int(tag: u32, v: i32) -> Self {
        Self {
            tag,
            value: Value::Integer(v),
        }
    }
    /// An enumeration.
    pub fn enumeration(tag: u32, v: u32) -> Self {
        Self {
            tag,
            value: Value::Enumeration(v),
        }
    }
    /// A boolean.
    pub fn boolean(tag: u32, v: bool) -> Self {
        Self {
            tag,
            value: Value::Boolean(v),
        }
    }
    /// A text string.
    pub fn text(tag: u32, v: &str) -> Self {
        Self {
            tag,
            value: Value::TextString(v.to_owned()),
        }
    }
    /// A byte string.
    pub fn bytes(tag: u32, v: &[u8]) -> Self {
        Self {
            tag,
            value: Value::ByteString(v.to_vec()),
        }
    }

    /// The first child with `tag`, if this is a structure.
    pub fn child(&self, tag: u32) -> Option<&Item> {
        match &self.value {
            Value::Structure(items) => items.iter().find(|i| i.tag == tag),
            _ => None,
        }
    }

    /// Follows a path of tags through nested structures.
    pub fn path(&self, tags: &[u32]) -> Option<&Item> {
        tags.iter().try_fold(self, |it, t| it.child(*t))
    }

    /// Appends the encoding of this item to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let tag = self.tag.to_be_bytes();
        out.extend_from_slice(&tag[1..]);
        let (ty, payload): (u8, std::borrow::Cow<'_, [u8]>) = match &self.value {
            Value::Structure(items) => {
                let mut inner = Vec::new();
                for i in items {
                    i.encode_into(&mut inner);
                }
                (0x01, inner.into())
            }
            Value::Integer(v) => (0x02, v.to_be_bytes().to_vec().into()),
            Value::LongInteger(v) => (0x03, v.to_be_bytes().to_vec().into()),
            Value::BigInteger(b) => (0x04, b.as_slice().into()),
            Value::Enumeration(v) => (0x05, v.to_be_bytes().to_vec().into()),
            Value::Boolean(v) => (0x06, u64::from(*v).to_be_bytes().to_vec().into()),
            Value::TextString(s) => (0x07, s.as_bytes().into()),
            Value::ByteString(b) => (0x08, b.as_slice().into()),
            Value::DateTime(v) => (0x09, v.to_be_bytes().to_vec().into()),
            Value::Interval(v) => (0x0A, v.to_be_bytes().to_vec().into()),
        };
        out.push(ty);
        // Lengths of what we encode are far below 4 GiB.
        out.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&payload);
        out.resize(out.len() + (8 - payload.len() % 8) % 8, 0);
    }

    /// The encoding of this item.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one item filling `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (item, used) = decode_at(buf, 0, 0)?;
        if used != buf.len() {
            return Err(DecodeError {
                offset: used,
                reason: "trailing bytes after the message",
            });
        }
        Ok(item)
    }
}

/// Total length (header + padded value) of the item whose 8-byte header starts `buf`.
pub fn frame_len(header: &[u8; 8]) -> usize {
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    8 + len.div_ceil(8) * 8
}

fn fixed<const N: usize>(v: &[u8], offset: usize) -> Result<[u8; N], DecodeError> {
    v.try_into().map_err(|_| DecodeError {
        offset,
        reason: "wrong length for a fixed-size type",
    })
}

fn decode_at(buf: &[u8], offset: usize, depth: usize) -> Result<(Item, usize), DecodeError> {
    let err = |reason| DecodeError { offset, reason };
    if depth > MAX_DEPTH {
        return Err(err("structures nested too deeply"));
    }
    let hdr = buf
        .get(offset..offset + 8)
        .ok_or(err("truncated item header"))?;
    let tag = u32::from_be_bytes([0, hdr[0], hdr[1], hdr[2]]);
    let ty = hdr[3];
    let len = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
    let start = offset + 8;
    let v = buf
        .get(start..start.checked_add(len).ok_or(err("length overflow"))?)
        .ok_or(err("truncated item value"))?;
    let padded = len.div_ceil(8) * 8;
    let end = start + padded;
    if end > buf.len() {
        return Err(err("truncated padding"));
    }
    let value = match ty {
        0x01 => {
            let mut items = Vec::new();
            let mut pos = start;
            while pos < start + len {
                let (it, next) = decode_at(&buf[..start + len], pos, depth + 1)?;
                items.push(it);
                pos = next;
            }
            Value::Structure(items)
        }
        0x02 => Value::Integer(i32::from_be_bytes(fixed(v, offset)?)),
        0x03 => Value::LongInteger(i64::from_be_bytes(fixed(v, offset)?)),
        0x04 => {
            if len % 8 != 0 {
                return Err(err("big integer length is not a multiple of 8"));
            }
            Value::BigInteger(v.to_vec())
        }
        0x05 => Value::Enumeration(u32::from_be_bytes(fixed(v, offset)?)),
        0x06 => match u64::from_be_bytes(fixed(v, offset)?) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(err("boolean is neither 0 nor 1")),
        },
        0x07 => Value::TextString(
            String::from_utf8(v.to_vec()).map_err(|_| err("text string is not UTF-8"))?,
        ),
        0x08 => Value::ByteString(v.to_vec()),
        0x09 => Value::DateTime(i64::from_be_bytes(fixed(v, offset)?)),
        0x0A => Value::Interval(u32::from_be_bytes(fixed(v, offset)?)),
        _ => return Err(err("unknown item type")),
    };
    Ok((Item { tag, value }, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KMIP 1.4 specification §9.1.2 examples (Test Cases document encodings).
    #[test]
    fn spec_examples() {
        let cases: Vec<(Item, &str)> = vec![
            (Item::int(0x42_0020, 8), "42002002000000040000000800000000"),
            (
                Item {
                    tag: 0x42_0020,
                    value: Value::LongInteger(123_456_789_000_000_000),
                },
                "4200200300000008 01B69B4BA5749200",
            ),
            (
                Item::enumeration(0x42_0020, 255),
                "42002005000000040000 00FF00000000",
            ),
            (
                Item::boolean(0x42_0020, true),
                "42002006000000080000000000000001",
            ),
            (
                Item::text(0x42_0020, "Hello World"),
                "420020070000000B48656C6C6F20576F726C640000000000",
            ),
            (
                Item::bytes(0x42_0020, &[1, 2, 3]),
                "42002008000000030102030000000000",
            ),
            (
                Item {
                    tag: 0x42_0020,
                    value: Value::DateTime(0x47DA_67F8),
                },
                "42002009000000080000000047DA67F8",
            ),
            (
                Item {
                    tag: 0x42_0020,
                    value: Value::Interval(864_000),
                },
                "4200200A00000004000D2F0000000000",
            ),
            (
                Item::structure(
                    0x42_0020,
                    vec![Item::enumeration(0x42_0004, 254), Item::int(0x42_0005, 255)],
                ),
                "42002001000000204200040500000004000000FE000000004200050200000004000000FF00000000",
            ),
        ];
        for (item, hex_str) in cases {
            let want = hex::decode(hex_str.replace(' ', "")).unwrap();
            assert_eq!(item.encode(), want, "{item:?}");
            assert_eq!(Item::decode(&want).unwrap(), item);
        }
    }

    #[test]
    fn rejects_malformed_input() {
        let good = Item::structure(
            0x42_0078,
            vec![Item::text(0x42_0094, "abc"), Item::int(0x42_000D, 1)],
        )
        .encode();
        for cut in 0..good.len() {
            assert!(Item::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_type = Item::int(0x42_0020, 1).encode();
        bad_type[3] = 0x0B;
        assert!(Item::decode(&bad_type).is_err());
        let mut bad_len = Item::int(0x42_0020, 1).encode();
        bad_len[7] = 5;
        assert!(Item::decode(&bad_len).is_err());
        let mut deep = Item::int(0x42_0020, 1);
        for _ in 0..40 {
            deep = Item::structure(0x42_0020, vec![deep]);
        }
        assert!(Item::decode(&deep.encode()).is_err());
        assert!(Item::decode(&[good.clone(), vec![0; 8]].concat()).is_err());
    }
}
