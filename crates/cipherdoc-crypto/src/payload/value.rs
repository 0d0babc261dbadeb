//! `VB(x)`: the value bytes of a BSON value (qe-protocol §0), and the reverse.

use bson::spec::ElementType;
use bson::{Bson, RawDocument};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A BSON value split into its element type byte and value bytes `VB`.
/// The bytes are a plaintext, so they are zeroized on drop.
#[derive(Clone, PartialEq)]
pub struct BsonValueBytes {
    /// `T(value)`.
    pub element_type: ElementType,
    /// `VB(value)`.
    pub bytes: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for BsonValueBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BsonValueBytes({:?}, ..)", self.element_type)
    }
}

impl BsonValueBytes {
    /// Splits a value.
    pub fn from_bson(v: &Bson) -> Result<Self> {
        let bytes = value_bytes(v)?;
        Ok(Self {
            element_type: v.element_type(),
            bytes,
        })
    }
    /// Rebuilds the value.
    pub fn to_bson(&self) -> Result<Bson> {
        value_from_bytes(self.element_type, &self.bytes)
    }
}

/// `VB(v)`: the bytes that follow the type byte and (empty) name of `v` inside
/// a BSON document.
pub fn value_bytes(v: &Bson) -> Result<Zeroizing<Vec<u8>>> {
    // Fast paths for the types that dominate encrypted fields.
    let mut out = Zeroizing::new(Vec::new());
    match v {
        Bson::String(s) => {
            let n =
                i32::try_from(s.len() + 1).map_err(|_| Error::Bson("string too long".into()))?;
            out.reserve(s.len() + 5);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        Bson::Int32(n) => out.extend_from_slice(&n.to_le_bytes()),
        Bson::Int64(n) => out.extend_from_slice(&n.to_le_bytes()),
        Bson::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
        Bson::Boolean(b) => out.push(u8::from(*b)),
        Bson::DateTime(d) => out.extend_from_slice(&d.timestamp_millis().to_le_bytes()),
        _ => {
            let mut doc = bson::Document::new();
            doc.insert("", v.clone());
            let mut buf = Zeroizing::new(Vec::new());
            doc.to_writer(&mut *buf)
                .map_err(|e| Error::Bson(format!("cannot serialise value: {e}")))?;
            // Layout: len(4) type(1) name ""(1) VB ... terminator(1).
            let end = buf.len().saturating_sub(1);
            let vb = buf
                .get(6..end)
                .ok_or_else(|| Error::Bson("unexpected BSON layout".into()))?;
            out.extend_from_slice(vb);
        }
    }
    Ok(out)
}

/// Rebuilds a BSON value from its type byte and value bytes; the bytes must
/// hold exactly one well-formed value of that type.
pub fn value_from_bytes(ty: ElementType, vb: &[u8]) -> Result<Bson> {
    let err = |m: &str| Error::decode("BSON value", m);
    // Fast paths for fixed-size and string values: decryption of whole
    // documents spends most of its non-crypto time here.
    let fixed = |n: usize| -> Result<[u8; 8]> {
        if vb.len() != n {
            return Err(err("wrong length for its type"));
        }
        let mut a = [0u8; 8];
        a[..n].copy_from_slice(vb);
        Ok(a)
    };
    match ty {
        ElementType::Int32 => {
            return Ok(Bson::Int32(i32::from_le_bytes(
                fixed(4)?[..4].try_into().unwrap_or_default(),
            )));
        }
        ElementType::Int64 => return Ok(Bson::Int64(i64::from_le_bytes(fixed(8)?))),
        ElementType::Double => return Ok(Bson::Double(f64::from_le_bytes(fixed(8)?))),
        ElementType::DateTime => {
            return Ok(Bson::DateTime(bson::DateTime::from_millis(
                i64::from_le_bytes(fixed(8)?),
            )));
        }
        ElementType::Boolean => {
            return match vb {
                [0] => Ok(Bson::Boolean(false)),
                [1] => Ok(Bson::Boolean(true)),
                _ => Err(err("invalid boolean")),
            };
        }
        ElementType::String => {
            let (len, rest) = vb
                .split_at_checked(4)
                .ok_or_else(|| err("string too short"))?;
            let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
            return match rest.split_last() {
                Some((0, body)) if len == rest.len() => std::str::from_utf8(body)
                    .map(|s| Bson::String(s.to_owned()))
                    .map_err(|_| err("string is not valid UTF-8")),
                _ => Err(err("malformed string")),
            };
        }
        _ => {}
    }
    let total = vb
        .len()
        .checked_add(7)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| err("value too long"))?;
    let mut doc = Zeroizing::new(Vec::with_capacity(vb.len() + 7));
    doc.extend_from_slice(&total.to_le_bytes());
    doc.push(ty as u8);
    doc.push(0);
    doc.extend_from_slice(vb);
    doc.push(0);
    let raw = RawDocument::from_bytes(&doc).map_err(|e| err(&e.to_string()))?;
    let mut it = raw.into_iter();
    let first = it
        .next()
        .ok_or_else(|| err("no value"))?
        .map_err(|e| err(&e.to_string()))?;
    if it.next().is_some() {
        return Err(err("trailing bytes after the value"));
    }
    let owned = first.1.to_raw_bson();
    Bson::try_from(owned).map_err(|e| err(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn value_bytes_examples() {
        assert_eq!(
            &*value_bytes(&Bson::String("value123".into())).unwrap(),
            b"\x09\x00\x00\x00value123\x00"
        );
        assert_eq!(
            &*value_bytes(&Bson::Int32(123_456)).unwrap(),
            &[0x40, 0xE2, 0x01, 0x00]
        );
        let d = doc! {"a": 1};
        let mut full = Vec::new();
        d.to_writer(&mut full).unwrap();
        assert_eq!(&*value_bytes(&Bson::Document(d)).unwrap(), &full[..]);
    }

    #[test]
    fn roundtrip_many_types() {
        let vals = [
            Bson::String("x".into()),
            Bson::Int32(-5),
            Bson::Int64(1 << 40),
            Bson::Double(1.5),
            Bson::Boolean(true),
            Bson::DateTime(bson::DateTime::from_millis(12345)),
            Bson::Document(doc! {"a": [1, "b"]}),
            Bson::Array(vec![Bson::Null, Bson::Int32(2)]),
            Bson::ObjectId(bson::oid::ObjectId::from_bytes([7; 12])),
            Bson::Decimal128(bson::Decimal128::from_bytes([3; 16])),
            Bson::Timestamp(bson::Timestamp {
                time: 1,
                increment: 2,
            }),
            Bson::RegularExpression(bson::Regex {
                pattern: "a+".into(),
                options: "i".into(),
            }),
            Bson::JavaScriptCode("f()".into()),
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![1, 2],
            }),
        ];
        for v in vals {
            let vb = value_bytes(&v).unwrap();
            assert_eq!(value_from_bytes(v.element_type(), &vb).unwrap(), v);
        }
    }

    #[test]
    fn rejects_trailing_or_short_bytes() {
        assert!(value_from_bytes(ElementType::Int32, &[1, 2, 3]).is_err());
        assert!(value_from_bytes(ElementType::Int32, &[1, 2, 3, 4, 5]).is_err());
        assert!(value_from_bytes(ElementType::String, b"\x02\x00\x00\x00a").is_err());
    }
}
