//! SPDY/3 header blocks and their compression.
//!
//! A header block is `u32 count`, then per header `u32 len, name, u32 len, value`
//! (names lowercase, several values joined by NUL). Each direction of a connection
//! compresses every block with one zlib stream for the whole connection, started
//! from the preset [`DICTIONARY`] and sync-flushed after each block, so a block can
//! only be decoded after all the blocks before it, in order.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;
use super::protocol_error;

/// The most a decompressed header block may hold; real blocks are a few hundred
/// bytes, and this bounds what a peer can make us allocate.
const MAX_BLOCK: usize = 256 * 1024;

/// A header block: names in lowercase, in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name: value` (the name is lowercased, as SPDY requires).
    #[cfg(test)]
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The value of `name` (any case); several values come joined by NUL.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The uncompressed block.
    fn to_block(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, value) in &self.0 {
            for part in [name.as_bytes(), value.as_bytes()] {
                out.extend_from_slice(&(part.len() as u32).to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }

    /// Parses an uncompressed block.
    fn from_block(block: &[u8]) -> Result<Self, io::Error> {
        let mut rest = block;
        let count = take_u32(&mut rest)?;
        let mut headers = Vec::new();
        for _ in 0..count {
            let name = take_string(&mut rest)?;
            let value = take_string(&mut rest)?;
            if name.is_empty() {
                return Err(protocol_error("empty header name"));
            }
            headers.push((name.to_ascii_lowercase(), value));
        }
        if !rest.is_empty() {
            return Err(protocol_error(format!(
                "{} bytes after the last header",
                rest.len()
            )));
        }
        Ok(Self(headers))
    }
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, io::Error> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| protocol_error("header block is truncated"))?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(rest: &mut &[u8]) -> Result<String, io::Error> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(protocol_error("header block is truncated"));
    }
    let (text, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(text.to_vec()).map_err(|_| protocol_error("header is not UTF-8"))
}

/// The compressing side of one direction of a connection.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl HeaderEncoder {
    /// A fresh context, as at the start of a connection.
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::best(), true);
        // Cannot fail on a fresh stream: a dictionary is accepted before any input.
        let _ = zlib.set_dictionary(DICTIONARY);
        Self { zlib }
    }

    /// `headers` compressed and sync-flushed: the bytes a frame carries.
    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, io::Error> {
        let block = headers.to_block();
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        let start = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.zlib
                .compress_vec(&block[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| protocol_error(e.to_string()))?;
            // A sync flush is complete once all input is taken and zlib left room
            // in the output (a full buffer may hide more pending output).
            let done = (self.zlib.total_in() - start) as usize == block.len();
            if done && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The decompressing side of one direction of a connection.
pub struct HeaderDecoder {
    zlib: Decompress,
}

impl HeaderDecoder {
    /// A fresh context, as at the start of a connection.
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// Decodes the compressed block of one frame.
    pub fn decode(&mut self, compressed: &[u8]) -> Result<Headers, io::Error> {
        let mut out = Vec::with_capacity(compressed.len() * 4 + 256);
        let start = self.zlib.total_in();
        let consumed = |zlib: &Decompress| (zlib.total_in() - start) as usize;
        loop {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_BLOCK {
                    return Err(protocol_error(format!(
                        "header block larger than {MAX_BLOCK} bytes"
                    )));
                }
                out.reserve(out.len().max(1024));
            }
            let (before_in, before_out) = (consumed(&self.zlib), out.len());
            match self.zlib.decompress_vec(
                &compressed[before_in..],
                &mut out,
                FlushDecompress::Sync,
            ) {
                // The zlib header names a dictionary: the SPDY one is the only one.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| protocol_error(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(protocol_error(e.to_string())),
                Ok(Status::StreamEnd) => {
                    return Err(protocol_error(
                        "the peer ended its header compression stream",
                    ))
                }
                Ok(_) => {}
            }
            // Done once all input is taken and zlib had room left (a full buffer may
            // hide more output); stuck when nothing moved although there was room.
            let room_left = out.len() < out.capacity();
            if consumed(&self.zlib) == compressed.len() && room_left {
                break;
            }
            if consumed(&self.zlib) == before_in && out.len() == before_out && room_left {
                return Err(protocol_error("header block does not decompress"));
            }
        }
        Headers::from_block(&out)
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        // Length and checksum of the dictionary the SPDY/3 draft lists; zlib puts
        // this checksum in the stream header (DICTID).
        assert_eq!(DICTIONARY.len(), 1423);
        let mut zlib = Compress::new(Compression::best(), true);
        let adler = zlib.set_dictionary(DICTIONARY).unwrap();
        let mut out = Vec::with_capacity(64);
        zlib.compress_vec(b"", &mut out, FlushCompress::Sync)
            .unwrap();
        assert_eq!(
            &out[2..6],
            adler.to_be_bytes(),
            "DICTID follows the zlib header"
        );
    }

    #[test]
    fn blocks_round_trip_with_one_context_per_direction() {
        let mut encoder = HeaderEncoder::new();
        let mut decoder = HeaderDecoder::new();
        let blocks = [
            Headers::new().with("streamType", "error"),
            Headers::new()
                .with("streamtype", "stdout")
                .with("x", "a\0b"),
            Headers::new(),
            Headers::new().with("port", "8080").with("requestid", "0"),
        ];
        for headers in &blocks {
            let wire = encoder.encode(headers).unwrap();
            assert_eq!(&decoder.decode(&wire).unwrap(), headers);
        }
        assert_eq!(blocks[0].get("STREAMTYPE"), Some("error"));
    }

    #[test]
    fn a_block_out_of_order_does_not_decode() {
        let mut encoder = HeaderEncoder::new();
        let first = encoder.encode(&Headers::new().with("a", "1")).unwrap();
        let second = encoder.encode(&Headers::new().with("a", "1")).unwrap();
        assert!(HeaderDecoder::new().decode(&second).is_err());
        let mut decoder = HeaderDecoder::new();
        decoder.decode(&first).unwrap();
        assert_eq!(decoder.decode(&second).unwrap().get("a"), Some("1"));
    }

    #[test]
    fn garbage_and_truncated_blocks_are_errors_not_panics() {
        assert!(HeaderDecoder::new().decode(b"not zlib at all").is_err());
        assert!(Headers::from_block(&[0, 0, 0, 2, 0, 0, 0, 1, b'a']).is_err());
        assert!(Headers::from_block(&[0, 0, 0, 0, 9]).is_err());
    }
}
