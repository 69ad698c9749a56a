//! One bounded reader and writer for the hand-written byte codecs of every crate: a reader never
//! reads past its input, refuses counts that the remaining bytes cannot hold before allocating
//! anything for them, and [`Reader::finish`] refuses trailing bytes; so a decoder built on it
//! is strict (exact lengths, nothing trailing) and allocates at most what its input backs.

use std::io;

/// An `InvalidData` error naming what is wrong with a peer's bytes.
pub fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A cursor over bytes to decode.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`; `what` names the message in errors ("a labels pull request").
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    fn short(&self) -> io::Error {
        invalid(format!("{} is cut short", self.what))
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(self.short());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A byte.
    pub fn u8(&mut self) -> io::Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A `u32` count of items of at least `item_len` bytes each, refused when above `max` or
    /// when the remaining bytes cannot hold that many (so no allocation outgrows the input).
    pub fn count(&mut self, max: usize, item_len: usize) -> io::Result<usize> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(invalid(format!(
                "{} counts {n} items, over the limit of {max}",
                self.what
            )));
        }
        if n.saturating_mul(item_len.max(1)) > self.bytes.len() {
            return Err(self.short());
        }
        Ok(n)
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Ends decoding: an error if bytes are left.
    pub fn finish(self) -> io::Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(invalid(format!(
                "{} has {} trailing bytes",
                self.what,
                self.bytes.len()
            )))
        }
    }
}

/// Bytes being encoded, refused past a limit.
#[derive(Debug, Clone)]
pub struct Writer {
    out: Vec<u8>,
    max: usize,
    what: &'static str,
}

impl Writer {
    /// A writer refusing to grow past `max` bytes; `what` names the message in errors.
    pub fn new(max: usize, what: &'static str) -> Self {
        Self {
            out: Vec::new(),
            max,
            what,
        }
    }

    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) -> io::Result<&mut Self> {
        if self.out.len() + bytes.len() > self.max {
            return Err(invalid(format!(
                "{} would be over its limit of {} bytes",
                self.what, self.max
            )));
        }
        self.out.extend_from_slice(bytes);
        Ok(self)
    }

    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> io::Result<&mut Self> {
        self.put(&[v])
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> io::Result<&mut Self> {
        self.put(&v.to_le_bytes())
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> io::Result<&mut Self> {
        self.put(&v.to_le_bytes())
    }

    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, v: u64) -> io::Result<&mut Self> {
        self.put(&v.to_le_bytes())
    }

    /// Appends a `u32` count (refused above `max`).
    pub fn count(&mut self, n: usize, max: usize) -> io::Result<&mut Self> {
        if n > max {
            return Err(invalid(format!(
                "{} would count {n} items, over the limit of {max}",
                self.what
            )));
        }
        self.u32(n as u32)
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_is_strict_and_bounds_counts_by_its_input() {
        let mut w = Writer::new(64, "a test message");
        w.u8(7).unwrap().u16(0x0102).unwrap().count(2, 4).unwrap();
        w.u32(1).unwrap().u32(2).unwrap();
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes, "a test message");
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.count(4, 4).unwrap(), 2);
        assert_eq!((r.u32().unwrap(), r.u32().unwrap()), (1, 2));
        r.finish().unwrap();
        // A count the bytes cannot back, one over the limit, trailing bytes, a short read.
        let mut r = Reader::new(&[255, 255, 255, 0, 1], "x");
        assert!(r.count(usize::MAX, 1).is_err());
        let mut r = Reader::new(&[3, 0, 0, 0, 1, 2, 3], "x");
        assert!(r.count(2, 1).is_err());
        let mut r = Reader::new(&[1, 2], "x");
        r.u8().unwrap();
        assert!(r.clone().finish().is_err());
        assert!(r.u16().is_err());
        assert!(Writer::new(1, "x").u16(1).is_err());
        assert!(Writer::new(8, "x").count(3, 2).is_err());
    }
}
