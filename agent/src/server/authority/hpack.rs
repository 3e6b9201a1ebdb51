//! Reads a client's HPACK header blocks (RFC 7541) in step with the server's decoder
//! and rewrites every `:authority` value h2 would refuse.
//!
//! The rewrite keeps the value's length: a field the client adds to the dynamic table
//! then makes an entry of the same size in h2's table as in the client's encoder, so
//! both tables keep evicting the same entries and every later index keeps meaning
//! what the client meant. Everything but the rewritten fields is copied byte for byte.
//! For that, this decoder tracks the table as far as indices and sizes go: each
//! entry's size, name length, and whether it holds an `:authority`.

use std::collections::VecDeque;

use super::huffman;

/// The largest dynamic table followed. The client may only grow its table to what the
/// server advertised (h2: 4096 unless configured); a client asking for more is refused
/// by h2 anyway.
const MAX_TABLE_SIZE: usize = 1 << 20;

/// The table size every HPACK context starts with (RFC 7540 section 6.5.2).
const INITIAL_TABLE_SIZE: usize = 4096;

/// What an invalid empty `:authority` becomes when its length does not matter.
const PLACEHOLDER: &[u8] = b"localhost";

/// RFC 7541 Appendix A: the static table's names, index 1 first.
#[rustfmt::skip]
const STATIC_NAMES: [&str; 61] = [
    ":authority", ":method", ":method", ":path", ":path", ":scheme", ":scheme",
    ":status", ":status", ":status", ":status", ":status", ":status", ":status",
    "accept-charset", "accept-encoding", "accept-language", "accept-ranges", "accept",
    "access-control-allow-origin", "age", "allow", "authorization", "cache-control",
    "content-disposition", "content-encoding", "content-language", "content-length",
    "content-location", "content-range", "content-type", "cookie", "date", "etag",
    "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "link",
    "location", "max-forwards", "proxy-authenticate", "proxy-authorization", "range",
    "referer", "refresh", "retry-after", "server", "set-cookie",
    "strict-transport-security", "transfer-encoding", "user-agent", "vary", "via",
    "www-authenticate",
];

/// A header block this decoder cannot follow; h2's decoder fails on it as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("truncated header block")]
    Truncated,
    #[error("integer out of range")]
    Integer,
    #[error("index {0} not in the table")]
    Index(usize),
    #[error("invalid Huffman string")]
    Huffman,
    #[error("dynamic table size {0} too large")]
    TableSize(usize),
}

/// One dynamic table entry, as far as the rewrite needs it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// RFC 7541 section 4.1: name and value lengths plus 32.
    size: usize,
    name_len: usize,
    authority: Authority,
}

/// Whether a field is an `:authority`, and if so whether h2 accepts its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authority {
    No,
    Valid,
    Invalid,
}

/// The decoding context of one connection's client-to-server direction.
#[derive(Debug)]
pub struct Rewriter {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            entries: VecDeque::new(),
            size: 0,
            max_size: INITIAL_TABLE_SIZE,
        }
    }
}

impl Rewriter {
    /// Reads one complete header block, updating the table. `None` when no field
    /// needed a rewrite (forward the block as it came), else the rewritten block.
    pub fn rewrite(&mut self, block: &[u8]) -> Result<Option<Vec<u8>>, HpackError> {
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        let mut input = Input { block, pos: 0 };
        while !input.done() {
            let start = input.pos;
            let first = input.peek()?;
            let replacement = if first & 0x80 != 0 {
                self.indexed(&mut input)?
            } else if first & 0xe0 == 0x20 {
                let size = input.integer(5)?;
                if size > MAX_TABLE_SIZE {
                    return Err(HpackError::TableSize(size));
                }
                self.max_size = size;
                self.evict(0);
                None
            } else {
                self.literal(&mut input)?
            };
            if let Some(field) = replacement {
                let out = out.get_or_insert_with(|| Vec::with_capacity(block.len() + 16));
                out.extend_from_slice(&block[copied..start]);
                out.extend_from_slice(&field);
                copied = input.pos;
            }
        }
        Ok(out.map(|mut out| {
            out.extend_from_slice(&block[copied..]);
            out
        }))
    }

    /// An indexed field (section 6.1). Only an `:authority` h2 refuses is replaced, by
    /// a literal that leaves the table alone.
    fn indexed(&mut self, input: &mut Input) -> Result<Option<Vec<u8>>, HpackError> {
        let index = input.integer(7)?;
        let authority = match index {
            // The static `:authority` has an empty value.
            1 => Authority::Invalid,
            2..=61 => Authority::No,
            _ => self.dynamic(index)?.authority,
        };
        Ok((authority == Authority::Invalid).then(|| {
            let mut field = Vec::with_capacity(PLACEHOLDER.len() + 2);
            encode_integer(&mut field, 0x00, 4, 1);
            encode_string(&mut field, PLACEHOLDER);
            field
        }))
    }

    /// A literal field (sections 6.2.1 to 6.2.3), added to the table with incremental
    /// indexing.
    fn literal(&mut self, input: &mut Input) -> Result<Option<Vec<u8>>, HpackError> {
        let first = input.peek()?;
        let (pattern, prefix, indexing) = match first {
            f if f & 0xc0 == 0x40 => (0x40, 6, true),
            f if f & 0xf0 == 0x10 => (0x10, 4, false),
            _ => (0x00, 4, false),
        };
        let name_index = input.integer(prefix)?;
        let name_start = input.pos;
        let (name_len, is_authority) = match name_index {
            0 => {
                let name = input.string()?;
                (name.len(), name == b":authority")
            }
            1..=61 => (STATIC_NAMES[name_index - 1].len(), name_index == 1),
            _ => {
                let entry = self.dynamic(name_index)?;
                (entry.name_len, entry.authority != Authority::No)
            }
        };
        let name_end = input.pos;
        let value = input.string()?;
        let mut authority = Authority::No;
        let mut replacement = None;
        if is_authority {
            authority = Authority::Valid;
            if !acceptable(&value) {
                match sanitized(&value, indexing) {
                    Some(new_value) => {
                        let mut field = Vec::with_capacity(value.len() + 8);
                        encode_integer(&mut field, pattern, prefix, name_index);
                        field.extend_from_slice(&input.block[name_start..name_end]);
                        encode_string(&mut field, &new_value);
                        replacement = Some(field);
                    }
                    // Left as sent: h2 refuses the request, as it would without us.
                    None => authority = Authority::Invalid,
                }
            }
        }
        if indexing {
            self.insert(Entry {
                size: 32 + name_len + value.len(),
                name_len,
                authority,
            });
        }
        Ok(replacement)
    }

    /// The dynamic entry at HPACK index `index` (62 is the newest).
    fn dynamic(&self, index: usize) -> Result<Entry, HpackError> {
        index
            .checked_sub(62)
            .and_then(|i| self.entries.get(i))
            .copied()
            .ok_or(HpackError::Index(index))
    }

    /// Section 4.4: evict until the entry fits; an entry larger than the whole table
    /// empties it and is not added.
    fn insert(&mut self, entry: Entry) {
        self.evict(entry.size);
        if entry.size <= self.max_size {
            self.size += entry.size;
            self.entries.push_front(entry);
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.entries.pop_back() {
                Some(old) => self.size -= old.size,
                None => break,
            }
        }
    }
}

/// Whether h2 builds a request from this `:authority` (it parses it with `http`).
fn acceptable(value: &[u8]) -> bool {
    !value.is_empty() && tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

/// An `:authority` h2 accepts in place of `value`, of the same length when the field
/// is indexed (see the module doc): every byte outside RFC 3986's unreserved set
/// becomes `-`, so `tmp%2Frun%2Fberth.sock` becomes `tmp-2Frun-2Fberth.sock`. `None` for
/// an empty indexed value, which has no same-length replacement.
fn sanitized(value: &[u8], indexing: bool) -> Option<Vec<u8>> {
    if value.is_empty() {
        return (!indexing).then(|| PLACEHOLDER.to_vec());
    }
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    Some(
        value
            .iter()
            .map(|&b| if unreserved(b) { b } else { b'-' })
            .collect(),
    )
}

/// Section 5.1: `value` with an `prefix`-bit prefix, the first byte's other bits being
/// `pattern`.
pub(super) fn encode_integer(out: &mut Vec<u8>, pattern: u8, prefix: u8, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(pattern | value as u8);
        return;
    }
    out.push(pattern | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Section 5.2: a string literal, not Huffman-coded.
fn encode_string(out: &mut Vec<u8>, value: &[u8]) {
    encode_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// A cursor over one header block.
struct Input<'a> {
    block: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.pos >= self.block.len()
    }

    fn peek(&self) -> Result<u8, HpackError> {
        self.block
            .get(self.pos)
            .copied()
            .ok_or(HpackError::Truncated)
    }

    fn byte(&mut self) -> Result<u8, HpackError> {
        let byte = self.peek()?;
        self.pos += 1;
        Ok(byte)
    }

    /// Section 5.1. Values past 2^28 are refused, as h2 does: no header block is that
    /// large.
    fn integer(&mut self, prefix: u8) -> Result<usize, HpackError> {
        let max = (1usize << prefix) - 1;
        let mut value = usize::from(self.byte()?) & max;
        if value < max {
            return Ok(value);
        }
        let mut shift = 0;
        loop {
            let byte = self.byte()?;
            value += usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
            if shift > 21 {
                return Err(HpackError::Integer);
            }
        }
    }

    /// Section 5.2: a string literal, Huffman-decoded when so flagged.
    fn string(&mut self) -> Result<Vec<u8>, HpackError> {
        let huffman = self.peek()? & 0x80 != 0;
        let len = self.integer(7)?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.block.len())
            .ok_or(HpackError::Truncated)?;
        let raw = &self.block[self.pos..end];
        self.pos = end;
        if huffman {
            huffman::decode(raw).map_err(|_| HpackError::Huffman)
        } else {
            Ok(raw.to_vec())
        }
    }
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
pub(super) mod tests;
