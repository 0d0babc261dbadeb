//! MongoDB's wire framing: the 16-byte header, `OP_MSG` (with document
//! sequences and the optional CRC-32C checksum), and the legacy `OP_QUERY` /
//! `OP_REPLY` pair that drivers still use for their very first handshake.
//!
//! Written by hand because no maintained crate implements the server side
//! of the wire protocol (the `mongodb` crate keeps its framing private);
//! BSON itself is the `bson` crate's.
//!
//! Every length read from the peer is checked against the bytes actually
//! present before it is used, so a truncated or lying frame becomes a
//! [`FrameError`] and never a panic or an over-read.

use bson::{Document, RawBsonRef, RawDocument};

/// mongod's `maxMessageSizeBytes`: no message may be longer.
pub const MAX_MESSAGE_SIZE: usize = 48_000_000;

/// mongod's `maxBsonObjectSize`: no single document may be longer.
pub const MAX_BSON_OBJECT_SIZE: usize = 16 * 1024 * 1024;

/// Nesting deeper than this is refused before any recursive decoding runs
/// (mongod's default `BSONDepth::kDefaultMaxAllowableDepth`).
pub const MAX_BSON_DEPTH: usize = 200;

/// The length of the standard message header.
pub const HEADER_LEN: usize = 16;

/// `OP_REPLY`: the answer to an `OP_QUERY`.
pub const OP_REPLY: i32 = 1;
/// `OP_QUERY`: accepted only for the legacy handshake.
pub const OP_QUERY: i32 = 2004;
/// `OP_COMPRESSED`: never negotiated, so never accepted.
pub const OP_COMPRESSED: i32 = 2012;
/// `OP_MSG`: everything else.
pub const OP_MSG: i32 = 2013;

/// `OP_MSG` flag: a CRC-32C of the message follows the sections.
pub const FLAG_CHECKSUM_PRESENT: u32 = 1;
/// `OP_MSG` flag: the sender expects no reply (requests) / more replies
/// follow (responses).
pub const FLAG_MORE_TO_COME: u32 = 1 << 1;
/// `OP_MSG` flag: the client accepts exhaust replies.
pub const FLAG_EXHAUST_ALLOWED: u32 = 1 << 16;
/// The flag bits a receiver must understand (bits 0–15); bits 16–31 are
/// optional and ignored when unknown.
const REQUIRED_FLAG_BITS: u32 = 0xFFFF;
const KNOWN_REQUIRED_BITS: u32 = FLAG_CHECKSUM_PRESENT | FLAG_MORE_TO_COME;

/// Why a frame was refused. Each one closes the connection it came on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header's length is smaller than a header or larger than
    /// [`MAX_MESSAGE_SIZE`].
    #[error("message length {0} is outside 16..={MAX_MESSAGE_SIZE}")]
    BadLength(i64),
    /// An opcode this server does not speak.
    #[error("unsupported opcode {0}")]
    UnknownOpcode(i32),
    /// `OP_COMPRESSED` although no compressor was negotiated.
    #[error("OP_COMPRESSED received, but this server offers no compressors")]
    Compressed,
    /// A required `OP_MSG` flag bit this server does not know.
    #[error("OP_MSG flags {0:#x} set required bits this server does not know")]
    UnknownFlags(u32),
    /// The message ended before a field it announced.
    #[error("truncated message: {0}")]
    Truncated(&'static str),
    /// The message's CRC-32C does not match its bytes.
    #[error("OP_MSG checksum mismatch")]
    Checksum,
    /// A section kind other than 0 (body) or 1 (document sequence).
    #[error("unknown OP_MSG section kind {0}")]
    UnknownSection(u8),
    /// Zero or several body sections.
    #[error("OP_MSG must have exactly one body section (found {0})")]
    BodyCount(usize),
    /// A BSON document that does not decode.
    #[error("invalid BSON in {place}: {reason}")]
    InvalidBson {
        /// Where the document was.
        place: &'static str,
        /// The decoder's complaint (never document contents).
        reason: String,
    },
    /// A document nested deeper than [`MAX_BSON_DEPTH`].
    #[error("BSON document nested deeper than {MAX_BSON_DEPTH} levels")]
    TooDeep,
    /// A document sequence's identifier that is not valid UTF-8 or has no
    /// terminator.
    #[error("invalid document sequence identifier")]
    BadIdentifier,
}

/// The standard message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total message length, header included.
    pub length: usize,
    /// The sender's id for this message.
    pub request_id: i32,
    /// For replies: the request this answers.
    pub response_to: i32,
    /// What follows the header.
    pub op_code: i32,
}

impl Header {
    /// Parse and bound-check a header.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, FrameError> {
        let i = |at: usize| i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let len = i(0);
        let length = usize::try_from(len)
            .ok()
            .filter(|l| (HEADER_LEN + 1..=MAX_MESSAGE_SIZE).contains(l))
            .ok_or(FrameError::BadLength(i64::from(len)))?;
        Ok(Self {
            length,
            request_id: i(4),
            response_to: i(8),
            op_code: i(12),
        })
    }
}

/// A request, decoded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// An `OP_MSG` command.
    Msg(OpMsg),
    /// A legacy `OP_QUERY` (only the handshake is answered).
    Query(OpQuery),
}

/// A decoded `OP_MSG`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpMsg {
    /// The flag bits.
    pub flags: u32,
    /// The kind-0 body: the command document.
    pub body: Document,
    /// Kind-1 sections: (identifier, documents), e.g. `("documents", [...])`
    /// for an `insert`.
    pub sequences: Vec<(String, Vec<Document>)>,
}

impl OpMsg {
    /// The sender expects no reply.
    pub fn more_to_come(&self) -> bool {
        self.flags & FLAG_MORE_TO_COME != 0
    }

    /// The body with every document sequence folded in as an array field,
    /// which is how mongod reads them (a sequence's identifier must not
    /// also be a body field).
    pub fn into_command(self) -> Result<Document, String> {
        let mut body = self.body;
        for (id, docs) in self.sequences {
            if body.contains_key(&id) {
                return Err(format!(
                    "duplicate field {id:?}: given both in the body and as a document sequence"
                ));
            }
            body.insert(
                id,
                docs.into_iter()
                    .map(bson::Bson::Document)
                    .collect::<Vec<_>>(),
            );
        }
        Ok(body)
    }
}

/// A decoded legacy `OP_QUERY`.
#[derive(Debug, Clone, PartialEq)]
pub struct OpQuery {
    /// The flag bits.
    pub flags: i32,
    /// `"<db>.<collection>"`, `"admin.$cmd"` for commands.
    pub full_collection_name: String,
    /// The query (for commands: the command, possibly wrapped in `$query`).
    pub query: Document,
}

/// Decode the body (everything after the header) of a message.
pub fn decode(header: &Header, body: &[u8]) -> Result<Request, FrameError> {
    match header.op_code {
        OP_MSG => decode_msg(header, body).map(Request::Msg),
        OP_QUERY => decode_query(body).map(Request::Query),
        OP_COMPRESSED => Err(FrameError::Compressed),
        other => Err(FrameError::UnknownOpcode(other)),
    }
}

/// A cursor over the message bytes that never reads past the end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, FrameError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstring(&mut self) -> Result<&'a str, FrameError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(FrameError::BadIdentifier)?;
        let s = std::str::from_utf8(&self.buf[..end]).map_err(|_| FrameError::BadIdentifier)?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// One length-prefixed BSON document, decoded and depth-checked.
    fn document(&mut self, place: &'static str) -> Result<Document, FrameError> {
        let Some(len_bytes) = self.buf.get(..4) else {
            return Err(FrameError::Truncated(place));
        };
        let len = i32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l >= 5)
            .ok_or_else(|| FrameError::InvalidBson {
                place,
                reason: format!("document length {len} is below the minimum of 5"),
            })?;
        let bytes = self.take(len, place)?;
        decode_document(bytes, place)
    }
}

/// Decode one BSON document of exactly `bytes`, refusing nesting deeper
/// than [`MAX_BSON_DEPTH`] before any recursive conversion runs.
pub fn decode_document(bytes: &[u8], place: &'static str) -> Result<Document, FrameError> {
    let invalid = |e: bson::raw::Error| FrameError::InvalidBson {
        place,
        reason: e.to_string(),
    };
    let raw = RawDocument::from_bytes(bytes).map_err(invalid)?;
    check_depth(raw).map_err(|e| match e {
        DepthError::TooDeep => FrameError::TooDeep,
        DepthError::Raw(e) => invalid(e),
    })?;
    Document::try_from(raw).map_err(invalid)
}

enum DepthError {
    TooDeep,
    Raw(bson::raw::Error),
}

/// Walks the raw document with an explicit stack (no recursion), so that a
/// hostile nesting depth cannot overflow this thread's stack; the `bson`
/// crate's conversion to [`Document`] recurses, and runs only afterwards.
fn check_depth(root: &RawDocument) -> Result<(), DepthError> {
    enum Node<'a> {
        Doc(&'a RawDocument),
        Arr(&'a bson::RawArray),
    }
    fn visit(v: RawBsonRef<'_>) -> Option<Node<'_>> {
        match v {
            RawBsonRef::Document(d) => Some(Node::Doc(d)),
            RawBsonRef::Array(a) => Some(Node::Arr(a)),
            RawBsonRef::JavaScriptCodeWithScope(c) => Some(Node::Doc(c.scope)),
            _ => None,
        }
    }
    let mut stack = vec![(Node::Doc(root), 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_BSON_DEPTH {
            return Err(DepthError::TooDeep);
        }
        match node {
            Node::Doc(d) => {
                for el in d {
                    let (_, v) = el.map_err(DepthError::Raw)?;
                    if let Some(n) = visit(v) {
                        stack.push((n, depth + 1));
                    }
                }
            }
            Node::Arr(a) => {
                for el in a {
                    let v = el.map_err(DepthError::Raw)?;
                    if let Some(n) = visit(v) {
                        stack.push((n, depth + 1));
                    }
                }
            }
        }
    }
    Ok(())
}

fn decode_msg(header: &Header, body: &[u8]) -> Result<OpMsg, FrameError> {
    let mut r = Reader { buf: body };
    let flags = u32::from_le_bytes(
        r.take(4, "OP_MSG flags")?
            .try_into()
            .map_err(|_| FrameError::Truncated("OP_MSG flags"))?,
    );
    if flags & REQUIRED_FLAG_BITS & !KNOWN_REQUIRED_BITS != 0 {
        return Err(FrameError::UnknownFlags(flags));
    }
    let mut sections_end = r.buf.len();
    if flags & FLAG_CHECKSUM_PRESENT != 0 {
        sections_end = sections_end
            .checked_sub(4)
            .ok_or(FrameError::Truncated("OP_MSG checksum"))?;
        let sent = u32::from_le_bytes(
            r.buf[sections_end..]
                .try_into()
                .map_err(|_| FrameError::Truncated("OP_MSG checksum"))?,
        );
        // The checksum covers the header and everything before it.
        let mut head = [0u8; HEADER_LEN];
        write_header(&mut head, header);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head), &body[..4 + sections_end]);
        if crc != sent {
            return Err(FrameError::Checksum);
        }
    }
    let mut sections = Reader {
        buf: &r.buf[..sections_end],
    };
    let mut bodies = Vec::new();
    let mut sequences = Vec::new();
    while !sections.buf.is_empty() {
        match sections.u8("OP_MSG section kind")? {
            0 => bodies.push(sections.document("OP_MSG body")?),
            1 => {
                let size = sections.i32("document sequence size")?;
                let size = usize::try_from(size)
                    .ok()
                    .and_then(|s| s.checked_sub(4))
                    .ok_or(FrameError::Truncated("document sequence"))?;
                let mut seq = Reader {
                    buf: sections.take(size, "document sequence")?,
                };
                let id = seq.cstring()?.to_owned();
                let mut docs = Vec::new();
                while !seq.buf.is_empty() {
                    docs.push(seq.document("OP_MSG document sequence")?);
                }
                sequences.push((id, docs));
            }
            other => return Err(FrameError::UnknownSection(other)),
        }
    }
    if bodies.len() != 1 {
        return Err(FrameError::BodyCount(bodies.len()));
    }
    let body = bodies.pop().ok_or(FrameError::BodyCount(0))?;
    Ok(OpMsg {
        flags,
        body,
        sequences,
    })
}

fn decode_query(body: &[u8]) -> Result<OpQuery, FrameError> {
    let mut r = Reader { buf: body };
    let flags = r.i32("OP_QUERY flags")?;
    let full_collection_name = r.cstring()?.to_owned();
    r.i32("OP_QUERY numberToSkip")?;
    r.i32("OP_QUERY numberToReturn")?;
    let query = r.document("OP_QUERY query")?;
    // An optional field selector may follow; the handshake never needs it,
    // but it must still be well-formed.
    if !r.buf.is_empty() {
        r.document("OP_QUERY returnFieldsSelector")?;
    }
    if !r.buf.is_empty() {
        return Err(FrameError::Truncated("OP_QUERY has trailing bytes"));
    }
    Ok(OpQuery {
        flags,
        full_collection_name,
        query,
    })
}

fn write_header(out: &mut [u8; HEADER_LEN], h: &Header) {
    let len = i32::try_from(h.length).unwrap_or(i32::MAX);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&h.request_id.to_le_bytes());
    out[8..12].copy_from_slice(&h.response_to.to_le_bytes());
    out[12..16].copy_from_slice(&h.op_code.to_le_bytes());
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let len = i32::try_from(out.len()).unwrap_or(i32::MAX);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out
}

fn header_placeholder(request_id: i32, response_to: i32, op_code: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&op_code.to_le_bytes());
    out
}

/// Encode an `OP_MSG` with one body section (replies, and the tests'
/// requests).
pub fn encode_msg(
    request_id: i32,
    response_to: i32,
    flags: u32,
    body: &Document,
) -> Result<Vec<u8>, bson::ser::Error> {
    let mut out = header_placeholder(request_id, response_to, OP_MSG);
    out.extend_from_slice(&flags.to_le_bytes());
    out.push(0);
    body.to_writer(&mut out)?;
    Ok(finish(out))
}

/// Encode an `OP_MSG` with a body and document sequences, optionally with
/// a checksum (what drivers send; used by tests and benches as a client).
pub fn encode_msg_with_sequences(
    request_id: i32,
    flags: u32,
    body: &Document,
    sequences: &[(&str, &[Document])],
) -> Result<Vec<u8>, bson::ser::Error> {
    let mut out = header_placeholder(request_id, 0, OP_MSG);
    out.extend_from_slice(&flags.to_le_bytes());
    out.push(0);
    body.to_writer(&mut out)?;
    for (id, docs) in sequences {
        out.push(1);
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(id.as_bytes());
        out.push(0);
        for d in *docs {
            d.to_writer(&mut out)?;
        }
        let size = i32::try_from(out.len() - at).unwrap_or(i32::MAX);
        out[at..at + 4].copy_from_slice(&size.to_le_bytes());
    }
    if flags & FLAG_CHECKSUM_PRESENT != 0 {
        let len = i32::try_from(out.len() + 4).unwrap_or(i32::MAX);
        out[0..4].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        return Ok(out);
    }
    Ok(finish(out))
}

/// Encode an `OP_REPLY` carrying one document (the answer to a legacy
/// `OP_QUERY` handshake).
pub fn encode_reply(
    request_id: i32,
    response_to: i32,
    doc: &Document,
) -> Result<Vec<u8>, bson::ser::Error> {
    let mut out = header_placeholder(request_id, response_to, OP_REPLY);
    out.extend_from_slice(&0i32.to_le_bytes()); // responseFlags
    out.extend_from_slice(&0i64.to_le_bytes()); // cursorID
    out.extend_from_slice(&0i32.to_le_bytes()); // startingFrom
    out.extend_from_slice(&1i32.to_le_bytes()); // numberReturned
    doc.to_writer(&mut out)?;
    Ok(finish(out))
}

/// Encode a legacy `OP_QUERY` (for tests acting as old drivers).
pub fn encode_query(
    request_id: i32,
    full_collection_name: &str,
    query: &Document,
) -> Result<Vec<u8>, bson::ser::Error> {
    let mut out = header_placeholder(request_id, 0, OP_QUERY);
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(full_collection_name.as_bytes());
    out.push(0);
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&(-1i32).to_le_bytes());
    query.to_writer(&mut out)?;
    Ok(finish(out))
}

/// Decode a reply (`OP_MSG` or `OP_REPLY`) into its document: the client
/// side, for tests and benches.
pub fn decode_reply(header: &Header, body: &[u8]) -> Result<Document, FrameError> {
    match header.op_code {
        OP_MSG => decode_msg(header, body).map(|m| m.body),
        OP_REPLY => {
            let mut r = Reader { buf: body };
            r.take(20, "OP_REPLY fields")?;
            r.document("OP_REPLY document")
        }
        other => Err(FrameError::UnknownOpcode(other)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use bson::doc;

    fn split(msg: &[u8]) -> (Header, &[u8]) {
        let h = Header::parse(msg[..16].try_into().unwrap()).unwrap();
        assert_eq!(h.length, msg.len());
        (h, &msg[16..])
    }

    #[test]
    fn msg_round_trip_with_sequences_and_checksum() {
        let docs = [doc! {"a": 1}, doc! {"b": "x"}];
        for flags in [0, FLAG_CHECKSUM_PRESENT] {
            let msg = encode_msg_with_sequences(
                7,
                flags,
                &doc! {"insert": "c", "$db": "d"},
                &[("documents", &docs)],
            )
            .unwrap();
            let (h, body) = split(&msg);
            let Request::Msg(m) = decode(&h, body).unwrap() else {
                panic!("not a msg")
            };
            assert_eq!(m.sequences, vec![("documents".to_owned(), docs.to_vec())]);
            let cmd = m.into_command().unwrap();
            assert_eq!(cmd.get_array("documents").unwrap().len(), 2);
        }
    }

    #[test]
    fn checksum_is_verified() {
        let mut msg =
            encode_msg_with_sequences(1, FLAG_CHECKSUM_PRESENT, &doc! {"ping": 1}, &[]).unwrap();
        let n = msg.len();
        msg[n - 1] ^= 1;
        let (h, body) = split(&msg);
        assert_eq!(decode(&h, body), Err(FrameError::Checksum));
    }

    #[test]
    fn lengths_are_bounded() {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&(49_000_000i32).to_le_bytes());
        assert!(matches!(Header::parse(&b), Err(FrameError::BadLength(_))));
        b[0..4].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(matches!(Header::parse(&b), Err(FrameError::BadLength(_))));
    }

    #[test]
    fn truncated_and_bad_sections_are_errors() {
        let msg = encode_msg(1, 0, 0, &doc! {"ping": 1}).unwrap();
        let (h, body) = split(&msg);
        for cut in 0..body.len() {
            assert!(decode(&h, &body[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = body.to_vec();
        bad[4] = 9;
        assert_eq!(decode(&h, &bad), Err(FrameError::UnknownSection(9)));
        let mut flags = body.to_vec();
        flags[0] = 4;
        assert_eq!(decode(&h, &flags), Err(FrameError::UnknownFlags(4)));
    }

    #[test]
    fn depth_is_limited_without_recursion() {
        // 100,000 nested documents: deeper than any recursive decoder's stack.
        let depth = 100_000usize;
        let mut bytes = Vec::new();
        let mut lens = Vec::new();
        for _ in 0..depth {
            lens.push(bytes.len());
            bytes.extend_from_slice(&[0, 0, 0, 0, 0x03, b'a', 0]);
        }
        lens.push(bytes.len());
        bytes.extend_from_slice(&[5, 0, 0, 0, 0]);
        bytes.resize(bytes.len() + depth, 0);
        let total = bytes.len();
        for (i, at) in lens.iter().take(depth).enumerate() {
            // Document i spans from its start to the matching trailing zero.
            let end = total - i;
            let len = i32::try_from(end - at).unwrap();
            bytes[*at..at + 4].copy_from_slice(&len.to_le_bytes());
        }
        assert_eq!(decode_document(&bytes, "test"), Err(FrameError::TooDeep));
    }

    #[test]
    fn legacy_query_round_trip() {
        let q = encode_query(3, "admin.$cmd", &doc! {"isMaster": 1}).unwrap();
        let (h, body) = split(&q);
        let Request::Query(q) = decode(&h, body).unwrap() else {
            panic!("not a query")
        };
        assert_eq!(q.full_collection_name, "admin.$cmd");
        let r = encode_reply(4, 3, &doc! {"ok": 1.0}).unwrap();
        let (h, body) = split(&r);
        assert_eq!(decode_reply(&h, body).unwrap(), doc! {"ok": 1.0});
    }
}
