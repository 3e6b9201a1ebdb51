//! Reading a zstd layer: every frame of it (zstd:chunked writes many, with skippable
//! frames between them), through libzstd. ruzstd, the pure-Rust decoder used before,
//! read real layers at ~150 MiB/s against libzstd's ~550 MiB/s on this project's
//! machines: on a compressible image decompression is most of a pull.

use std::io::{self, BufRead};

/// The largest window a layer may ask for, as a log2: libzstd's own default limit
/// (128 MiB), which every level up to 19 and `--long` stays within. A larger one
/// (a frame built to exhaust memory) is refused instead of allocated.
const WINDOW_LOG_MAX: u32 = 27;

/// The decompressed bytes of all frames of the zstd stream `source`, in order.
pub(crate) fn frames<'a, R: BufRead + 'a>(
    source: R,
) -> io::Result<zstd::stream::read::Decoder<'a, R>> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(source)?;
    decoder.window_log_max(WINDOW_LOG_MAX)?;
    Ok(decoder)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    #[test]
    fn every_frame_is_read_and_skippable_frames_are_skipped() {
        let mut stream = compress(b"first frame, ");
        stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        stream.extend_from_slice(&3u32.to_le_bytes());
        stream.extend_from_slice(b"xyz");
        stream.extend(compress(b"second frame"));
        let mut out = String::new();
        frames(&stream[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first frame, second frame");
    }

    #[test]
    fn garbage_after_a_frame_is_an_error() {
        let mut stream = compress(b"ok");
        stream.extend_from_slice(b"not zstd");
        let mut out = Vec::new();
        assert!(frames(&stream[..]).unwrap().read_to_end(&mut out).is_err());
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let stream = compress(&data);
        let mut out = Vec::new();
        assert!(frames(&stream[..stream.len() - 10])
            .unwrap()
            .read_to_end(&mut out)
            .is_err());
    }

    #[test]
    fn a_window_beyond_the_limit_is_refused() {
        // A frame header asking for a 2 GiB window (window descriptor exponent 21:
        // log 10 + 21), no content size, then an empty last raw block.
        let mut stream = 0xFD2F_B528u32.to_le_bytes().to_vec();
        stream.push(0x00); // frame header descriptor: no checksum, no size, no dict
        stream.push(21 << 3); // window descriptor
        stream.extend_from_slice(&[0x01, 0x00, 0x00]); // last raw block of 0 bytes
        let mut out = Vec::new();
        assert!(frames(&stream[..]).unwrap().read_to_end(&mut out).is_err());
        // The same frame with a 1 MiB window (exponent 10: log 20) reads.
        stream[5] = 10 << 3;
        out.clear();
        frames(&stream[..]).unwrap().read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
    }
}
