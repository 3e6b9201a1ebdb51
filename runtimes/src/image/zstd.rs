//! Reading every frame of a zstd layer: ruzstd's `StreamingDecoder` stops after one
//! frame, while a layer may hold several (zstd:chunked writes many, with skippable
//! frames between them).

use std::cell::RefCell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

/// A handle on the compressed stream each frame decoder reads from in turn.
struct Source<R>(Rc<RefCell<R>>);

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

/// The decompressed bytes of all frames of a zstd stream, in order.
pub(crate) struct ZstdFrames<R: Read> {
    source: Rc<RefCell<R>>,
    current: Option<StreamingDecoder<Source<R>, FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    pub(crate) fn new(source: R) -> Self {
        ZstdFrames {
            source: Rc::new(RefCell::new(source)),
            current: None,
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.current {
                let n = frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.current = None;
            }
            if self.source.borrow_mut().fill_buf()?.is_empty() {
                return Ok(0);
            }
            match StreamingDecoder::new(Source(self.source.clone())) {
                Ok(frame) => self.current = Some(frame),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped = io::copy(
                        &mut Source(self.source.clone()).take(length.into()),
                        &mut io::sink(),
                    )?;
                    if skipped != u64::from(length) {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "truncated skippable zstd frame",
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad zstd frame: {e}"),
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruzstd::encoding::{compress_to_vec, CompressionLevel};

    #[test]
    fn every_frame_is_read_and_skippable_frames_are_skipped() {
        let mut stream = compress_to_vec(&b"first frame, "[..], CompressionLevel::Fastest);
        stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        stream.extend_from_slice(&3u32.to_le_bytes());
        stream.extend_from_slice(b"xyz");
        stream.extend(compress_to_vec(
            &b"second frame"[..],
            CompressionLevel::Fastest,
        ));
        let mut out = String::new();
        ZstdFrames::new(&stream[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first frame, second frame");
    }

    #[test]
    fn garbage_after_a_frame_is_an_error() {
        let mut stream = compress_to_vec(&b"ok"[..], CompressionLevel::Fastest);
        stream.extend_from_slice(b"not zstd");
        let mut out = Vec::new();
        let err = ZstdFrames::new(&stream[..])
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
