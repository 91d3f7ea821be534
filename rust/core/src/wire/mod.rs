//! The byte formats that cross the JNI boundary; `ARCHITECTURE.md` is their specification.
//! Everything is big-endian, as `java.nio.ByteBuffer` writes it.

pub mod batch;
pub mod config;
pub mod outcome;

use thiserror::Error;

/// A buffer from Java that does not follow the format: a bug on one side, never a record error.
#[derive(Debug, Error, PartialEq)]
#[error("malformed {what} buffer at byte {at}: {reason}")]
pub struct WireError {
    pub what: &'static str,
    pub at: usize,
    pub reason: String,
}

/// A cursor over a buffer that borrows strings and bytes instead of copying them.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> WireError {
        WireError { what: self.what, at: self.pos, reason: reason.into() }
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        match end {
            Some(end) => {
                let slice = &self.buf[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(self.error(format!("needs {n} more bytes, {} left", self.buf.len() - self.pos))),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        Ok(self.take(N)?.try_into().expect("take returns exactly N bytes"))
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline]
    pub(crate) fn i32(&mut self) -> Result<i32, WireError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn f32(&mut self) -> Result<f32, WireError> {
        Ok(f32::from_be_bytes(self.array()?))
    }

    #[inline]
    pub(crate) fn f64(&mut self) -> Result<f64, WireError> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// A non-negative `i32` count or length.
    #[inline]
    pub(crate) fn len(&mut self) -> Result<usize, WireError> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| self.error(format!("negative length {n}")))
    }

    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.len()?;
        self.take(n)
    }

    #[inline]
    pub(crate) fn str(&mut self) -> Result<&'a str, WireError> {
        let bytes = self.bytes()?;
        // Field names and most values are ASCII: a word-at-a-time check beats full validation.
        if bytes.is_ascii() {
            // SAFETY: ASCII is valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|e| self.error(format!("string is not UTF-8: {e}")))
    }
}

/// The writing counterpart of [`Reader`].
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn str(&mut self, s: &str) {
        // Java arrays are bounded by i32; a longer message is cut rather than corrupting the buffer.
        let bytes = &s.as_bytes()[..s.len().min(i32::MAX as usize)];
        self.i32(bytes.len() as i32);
        self.buf.extend_from_slice(bytes);
    }
}

/// Sequence numbers from Java (`abandon`): big-endian `i64`s, nothing else.
pub fn decode_seqs(buf: &[u8]) -> Result<Vec<i64>, WireError> {
    let mut r = Reader::new(buf, "sequence numbers");
    let mut seqs = Vec::with_capacity(buf.len() / 8);
    while !r.is_at_end() {
        seqs.push(r.i64()?);
    }
    Ok(seqs)
}
