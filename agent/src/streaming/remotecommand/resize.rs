//! Terminal sizes from the resize stream: a sequence of JSON objects
//! `{"Width":80,"Height":24}`, which may arrive split across messages.

use runtimes::types::TerminalSize;
use serde::Deserialize;

#[derive(Deserialize)]
struct Size {
    // Go's JSON decoder matches names case-insensitively; senders use these two.
    #[serde(rename = "Width", alias = "width")]
    width: u16,
    #[serde(rename = "Height", alias = "height")]
    height: u16,
}

/// Collects bytes of the resize stream and yields the sizes they complete.
#[derive(Default)]
pub struct ResizeParser {
    pending: Vec<u8>,
    broken: bool,
}

impl ResizeParser {
    /// Adds `data`; returns the sizes it completed. After malformed input the
    /// parser yields nothing more (kubelet stops reading the stream then too).
    pub fn push(&mut self, data: &[u8]) -> Vec<TerminalSize> {
        if self.broken {
            return Vec::new();
        }
        self.pending.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut values = serde_json::Deserializer::from_slice(&self.pending).into_iter::<Size>();
        let consumed = loop {
            match values.next() {
                Some(Ok(size)) => sizes.push(TerminalSize {
                    width: size.width,
                    height: size.height,
                }),
                Some(Err(e)) if e.is_eof() => break values.byte_offset(),
                Some(Err(_)) => {
                    self.broken = true;
                    break self.pending.len();
                }
                None => break self.pending.len(),
            }
        };
        self.pending.drain(..consumed);
        sizes
    }

    /// True once the stream held something that is not a size.
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(width: u16, height: u16) -> TerminalSize {
        TerminalSize { width, height }
    }

    #[test]
    fn sizes_may_come_together_or_split() {
        let mut parser = ResizeParser::default();
        assert_eq!(
            parser.push(br#"{"Width":80,"Height":24}{"Width":100,"#),
            [size(80, 24)]
        );
        assert_eq!(parser.push(br#""Height":40}"#), [size(100, 40)]);
        assert_eq!(
            parser.push(b"\n {\"width\":1,\"height\":2}\n"),
            [size(1, 2)]
        );
    }

    #[test]
    fn garbage_stops_the_parser() {
        let mut parser = ResizeParser::default();
        assert!(parser.push(b"nonsense").is_empty());
        assert!(parser.is_broken());
        assert!(parser.push(br#"{"Width":80,"Height":24}"#).is_empty());
    }
}
