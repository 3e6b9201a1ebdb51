//! The CRI container log format kubelet reads:
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <text>\n`. A complete line is one `F`
//! record; a line longer than [`MAX_RECORD`] is cut into `P` (partial) records followed
//! by the `F` record of its end; output that ends without a newline is a final `P`
//! record, as containerd writes it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The longest text of one record (containerd's default `max_container_log_line_size`).
pub const MAX_RECORD: usize = 16 * 1024;

/// Which stream a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// Writes the records for the complete lines in `pending` (and partial records for
/// text past [`MAX_RECORD`] without a newline) to `out`, removing what it wrote;
/// what stays in `pending` is the start of an unfinished line. With `eof`, that rest
/// is written too, as a partial record. Each record is one `write_all`.
pub fn write_records(
    out: &mut impl Write,
    stream: Stream,
    pending: &mut Vec<u8>,
    eof: bool,
    timestamp: &str,
) -> io::Result<()> {
    let mut start = 0;
    let mut record = Vec::new();
    loop {
        let rest = &pending[start..];
        let (text, tag, used) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) if nl <= MAX_RECORD => (&rest[..nl], b'F', nl + 1),
            _ if rest.len() >= MAX_RECORD => (&rest[..MAX_RECORD], b'P', MAX_RECORD),
            _ if eof && !rest.is_empty() => (rest, b'P', rest.len()),
            _ => break,
        };
        record.clear();
        record.extend_from_slice(timestamp.as_bytes());
        record.push(b' ');
        record.extend_from_slice(stream.name());
        record.extend_from_slice(&[b' ', tag, b' ']);
        record.extend_from_slice(text);
        record.push(b'\n');
        out.write_all(&record)?;
        start += used;
    }
    pending.drain(..start);
    Ok(())
}

/// Now, as RFC 3339 with nanoseconds in UTC (`2024-01-02T03:04:05.123456789Z`).
pub fn now_rfc3339_nano() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// One container's log file, shared by its two streams; without a path the output
/// is read and dropped.
pub struct CriLog {
    path: Option<PathBuf>,
    file: Option<File>,
}

impl CriLog {
    /// Opens (appending, creating it and its directory) the log at `path`.
    pub fn open(path: Option<&Path>) -> io::Result<CriLog> {
        let mut log = CriLog {
            path: path.map(Path::to_path_buf),
            file: None,
        };
        log.reopen()?;
        Ok(log)
    }

    /// Closes the file and opens the path again: kubelet renamed it to rotate it.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        if let Some(path) = &self.path {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
        }
        Ok(())
    }

    /// Writes the records `pending` holds (see [`write_records`]).
    pub fn feed(&mut self, stream: Stream, pending: &mut Vec<u8>, eof: bool) -> io::Result<()> {
        match &mut self.file {
            Some(file) => write_records(file, stream, pending, eof, &now_rfc3339_nano()),
            None => {
                pending.clear();
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2024-01-02T03:04:05.000000001Z";

    fn records(stream: Stream, input: &[u8], eof: bool) -> (String, Vec<u8>) {
        let mut out = Vec::new();
        let mut pending = input.to_vec();
        write_records(&mut out, stream, &mut pending, eof, TS).unwrap();
        (String::from_utf8(out).unwrap(), pending)
    }

    #[test]
    fn complete_lines_are_full_records() {
        let (out, rest) = records(Stream::Stdout, b"hello\nworld\n", false);
        assert_eq!(out, format!("{TS} stdout F hello\n{TS} stdout F world\n"));
        assert!(rest.is_empty());
    }

    #[test]
    fn an_unfinished_line_waits_for_more_output() {
        let (out, rest) = records(Stream::Stderr, b"err\npart", false);
        assert_eq!(out, format!("{TS} stderr F err\n"));
        assert_eq!(rest, b"part");
    }

    #[test]
    fn at_end_of_stream_the_rest_is_a_partial_record() {
        let (out, rest) = records(Stream::Stdout, b"no newline", true);
        assert_eq!(out, format!("{TS} stdout P no newline\n"));
        assert!(rest.is_empty());
        let (out, _) = records(Stream::Stdout, b"", true);
        assert_eq!(out, "", "nothing pending writes nothing");
    }

    #[test]
    fn empty_lines_are_kept() {
        let (out, _) = records(Stream::Stdout, b"\n\n", false);
        assert_eq!(out, format!("{TS} stdout F \n{TS} stdout F \n"));
    }

    #[test]
    fn long_lines_are_split_into_16k_partial_records() {
        let line = vec![b'x'; 40_000];
        let mut input = line.clone();
        input.push(b'\n');
        let (out, rest) = records(Stream::Stdout, &input, false);
        assert!(rest.is_empty());
        let lines: Vec<&str> = out.lines().collect();
        let shape: Vec<(&str, usize)> = lines
            .iter()
            .map(|l| {
                let mut f = l.splitn(4, ' ');
                let (_, _, tag, text) = (f.next(), f.next(), f.next().unwrap(), f.next().unwrap());
                (tag, text.len())
            })
            .collect();
        assert_eq!(shape, vec![("P", 16384), ("P", 16384), ("F", 7232)]);
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_full_record() {
        let mut input = vec![b'y'; MAX_RECORD];
        input.push(b'\n');
        let (out, _) = records(Stream::Stdout, &input, false);
        assert_eq!(out.lines().count(), 1);
        assert!(out.contains(" F "));
    }

    #[test]
    fn the_timestamp_is_rfc3339_with_nanoseconds() {
        let ts = now_rfc3339_nano();
        let parsed = chrono::DateTime::parse_from_rfc3339(&ts).unwrap();
        assert!(
            ts.ends_with('Z') && ts.len() == "2024-01-02T03:04:05.123456789Z".len(),
            "{ts}"
        );
        assert!(parsed.timestamp() > 1_700_000_000);
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods/app/0.log");
        let mut log = CriLog::open(Some(&path)).unwrap();
        log.feed(Stream::Stdout, &mut b"one\n".to_vec(), false)
            .unwrap();
        std::fs::rename(&path, dir.path().join("rotated")).unwrap();
        log.reopen().unwrap();
        log.feed(Stream::Stdout, &mut b"two\n".to_vec(), false)
            .unwrap();
        let now = std::fs::read_to_string(&path).unwrap();
        let old = std::fs::read_to_string(dir.path().join("rotated")).unwrap();
        assert!(
            now.ends_with(" stdout F two\n") && now.lines().count() == 1,
            "{now}"
        );
        assert!(old.ends_with(" stdout F one\n"), "{old}");
    }
}
