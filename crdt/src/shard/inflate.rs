//! Bounds on what a peer's compressed automerge bytes inflate to, checked before automerge
//! parses them.
//!
//! automerge 0.12 inflates a compressed change chunk, and every DEFLATE column of a document
//! chunk, with `read_to_end` into a buffer it does not bound: 16 MiB of DEFLATE can become
//! about 16 GiB. So before automerge sees a peer's chunk, the DEFLATE streams in it are inflated
//! here into a sink (a fixed stack buffer, nothing kept), counting the bytes against one budget
//! per message, and the message is refused at the first byte over it.

use std::io::{self, Read};

/// Why a chunk's compressed contents were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The compressed streams of the message inflate to more than the budget.
    OverBudget,
    /// The chunk's layout does not parse, or a stream is not valid DEFLATE.
    Malformed(&'static str),
}

/// Bytes of the fixed chunk header before its length: magic (4), checksum (4), type (1).
const HEADER: usize = 9;
/// Bytes of a change hash.
const HASH_LEN: usize = 32;
/// The DEFLATE bit of an automerge column specification.
const DEFLATE_BIT: u64 = 0b1000;

/// A cursor over a chunk's bytes that never reads past them.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn uleb(&mut self) -> Result<u64, InflateError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or(InflateError::Malformed("truncated length"))?;
            self.at += 1;
            value |= u64::from(byte & 0x7f)
                .checked_shl(shift)
                .ok_or(InflateError::Malformed("length overflows"))?;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(InflateError::Malformed("length overflows"))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], InflateError> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.at.checked_add(len))
            .filter(|end| *end <= self.bytes.len())
            .ok_or(InflateError::Malformed("a section runs past the chunk"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
}

/// Inflates raw DEFLATE `data` into a sink, taking its size from `budget`.
fn spend(data: &[u8], budget: &mut usize) -> Result<(), InflateError> {
    let limit = *budget as u64 + 1;
    let mut decoder = flate2::read::DeflateDecoder::new(data).take(limit);
    let inflated = io::copy(&mut decoder, &mut io::sink())
        .map_err(|_| InflateError::Malformed("a compressed stream is not valid DEFLATE"))?;
    if inflated >= limit {
        return Err(InflateError::OverBudget);
    }
    // `inflated < limit = budget + 1`, so this does not underflow.
    *budget -= inflated as usize;
    Ok(())
}

/// The data of a chunk (after its header and length).
fn data(chunk: &[u8]) -> Result<Cursor<'_>, InflateError> {
    let mut cursor = Cursor {
        bytes: chunk,
        at: HEADER.min(chunk.len()),
    };
    if chunk.len() < HEADER {
        return Err(InflateError::Malformed("truncated header"));
    }
    let len = cursor.uleb()?;
    let data = cursor.take(len)?;
    Ok(Cursor { bytes: data, at: 0 })
}

/// Checks a compressed change chunk: its data is one DEFLATE stream.
pub(crate) fn compressed_change(chunk: &[u8], budget: &mut usize) -> Result<(), InflateError> {
    let data = data(chunk)?;
    spend(data.bytes, budget)
}

/// Checks a document chunk: each of its columns flagged DEFLATE is one stream.
pub(crate) fn document(chunk: &[u8], budget: &mut usize) -> Result<(), InflateError> {
    let mut c = data(chunk)?;
    // Actors: count, then each length-prefixed.
    for _ in 0..c.uleb()? {
        let len = c.uleb()?;
        c.take(len)?;
    }
    // Heads: count, then each a change hash.
    let heads = c.uleb()?;
    c.take(heads.saturating_mul(HASH_LEN as u64))?;
    // The change columns' and then the ops columns' metadata: count, then (spec, length) each.
    let mut columns = Vec::new();
    for _ in 0..2 {
        let count = c.uleb()?;
        for _ in 0..count {
            let spec = c.uleb()?;
            let len = c.uleb()?;
            // Each column costs at least two bytes of metadata, so `columns` stays smaller
            // than the chunk.
            columns.push((spec & DEFLATE_BIT != 0, len));
        }
    }
    // Their data, in the same order.
    for (deflate, len) in columns {
        let data = c.take(len)?;
        if deflate {
            spend(data, budget)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn deflate(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn uleb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn chunk(kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, kind];
        uleb(data.len() as u64, &mut out);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn a_compressed_change_within_the_budget_spends_what_it_inflates_to() {
        let c = chunk(2, &deflate(&[7; 1000]));
        let mut budget = 5000;
        compressed_change(&c, &mut budget).unwrap();
        assert_eq!(budget, 4000);
    }

    #[test]
    fn a_deflate_bomb_is_refused_at_the_budget() {
        // 64 MiB of zeros deflate to about 64 KiB.
        let c = chunk(2, &deflate(&vec![0; 64 << 20]));
        let mut budget = 1 << 20;
        assert_eq!(
            compressed_change(&c, &mut budget),
            Err(InflateError::OverBudget)
        );
    }

    #[test]
    fn deflated_document_columns_share_one_budget() {
        let column = deflate(&[1; 600]);
        let mut data = Vec::new();
        uleb(1, &mut data); // one actor
        uleb(2, &mut data);
        data.extend_from_slice(&[9, 9]);
        uleb(0, &mut data); // no heads
        uleb(1, &mut data); // one change column, deflated
        uleb(DEFLATE_BIT | 0x10, &mut data);
        uleb(column.len() as u64, &mut data);
        uleb(1, &mut data); // one ops column, deflated
        uleb(DEFLATE_BIT | 0x20, &mut data);
        uleb(column.len() as u64, &mut data);
        data.extend_from_slice(&column);
        data.extend_from_slice(&column);
        let c = chunk(0, &data);
        let mut budget = 1000;
        assert_eq!(document(&c, &mut budget), Err(InflateError::OverBudget));
        let mut budget = 1200;
        document(&c, &mut budget).unwrap();
        assert_eq!(budget, 0);
    }

    #[test]
    fn lengths_past_the_chunk_and_bad_streams_are_malformed() {
        let mut c = chunk(2, &deflate(&[1; 10]));
        c.truncate(c.len() - 1);
        assert!(matches!(
            compressed_change(&c, &mut 100),
            Err(InflateError::Malformed(_))
        ));
        let c = chunk(2, &[0xff; 20]);
        assert!(matches!(
            compressed_change(&c, &mut 100),
            Err(InflateError::Malformed(_))
        ));
        let mut data = Vec::new();
        uleb(u64::MAX, &mut data); // an absurd actor count
        let c = chunk(0, &data);
        assert!(matches!(
            document(&c, &mut 100),
            Err(InflateError::Malformed(_))
        ));
    }
}
