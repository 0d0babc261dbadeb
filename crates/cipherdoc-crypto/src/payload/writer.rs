//! A minimal BSON document writer.
//!
//! Hand-written rather than going through `bson::Document` because payloads
//! are built per value on the hot path and must come out in a fixed field
//! order; this writes straight into one buffer.

pub(crate) struct DocWriter {
    buf: Vec<u8>,
    start: usize,
}

impl DocWriter {
    /// Starts a document after an optional one-byte blob prefix.
    pub(crate) fn new(prefix: Option<u8>, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        if let Some(p) = prefix {
            buf.push(p);
        }
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]);
        Self { buf, start }
    }

    fn key(&mut self, ty: u8, key: &str) {
        self.buf.push(ty);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(0);
    }

    pub(crate) fn binary(&mut self, key: &str, subtype: u8, bytes: &[u8]) {
        self.key(0x05, key);
        self.len_prefix(bytes.len());
        self.buf.push(subtype);
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn int32(&mut self, key: &str, v: i32) {
        self.key(0x10, key);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn boolean(&mut self, key: &str, v: bool) {
        self.key(0x08, key);
        self.buf.push(u8::from(v));
    }

    pub(crate) fn int64(&mut self, key: &str, v: i64) {
        self.key(0x12, key);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An element from its type byte and value bytes.
    pub(crate) fn raw(&mut self, key: &str, ty: u8, value_bytes: &[u8]) {
        self.key(ty, key);
        self.buf.extend_from_slice(value_bytes);
    }

    fn len_prefix(&mut self, n: usize) {
        // Blobs here are far below 2 GiB; saturate rather than wrap if not.
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.push(0);
        let len = i32::try_from(self.buf.len() - self.start).unwrap_or(i32::MAX);
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
        self.buf
    }
}
