//! The framing against exchanges recorded between crictl 1.34 and containerd 1.6's
//! CRI streaming server (kubelet's streaming library on moby/spdystream), made by
//! `agent/tests/streaming/record-vectors.sh`. Each file is one direction of one
//! connection: the HTTP upgrade, then SPDY frames whose header blocks share one
//! zlib context, so they decode only in order, with one decoder per direction.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{rst, Frame, FrameDecoder, FrameEncoder, FLAG_FIN};
use super::headers::Headers;

/// One recorded direction: the raw bytes after the HTTP head, and the head.
pub(crate) struct Recorded {
    pub head: String,
    pub spdy: Vec<u8>,
}

/// The recording `name` (`exec.client`, `portforward.server`, …).
pub(crate) fn recorded(name: &str) -> Recorded {
    let text = match name {
        "exec.client" => include_str!("vectors/exec.client.hex"),
        "exec.server" => include_str!("vectors/exec.server.hex"),
        "exec-stdin.client" => include_str!("vectors/exec-stdin.client.hex"),
        "exec-stdin.server" => include_str!("vectors/exec-stdin.server.hex"),
        "exec-tty.client" => include_str!("vectors/exec-tty.client.hex"),
        "exec-tty.server" => include_str!("vectors/exec-tty.server.hex"),
        "portforward.client" => include_str!("vectors/portforward.client.hex"),
        "portforward.server" => include_str!("vectors/portforward.server.hex"),
        "portforward-closed.client" => include_str!("vectors/portforward-closed.client.hex"),
        "portforward-closed.server" => include_str!("vectors/portforward-closed.server.hex"),
        other => panic!("no recording {other}"),
    };
    let bytes = hex::decode(text.split_whitespace().collect::<String>()).unwrap();
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    Recorded {
        head: String::from_utf8(bytes[..end].to_vec()).unwrap(),
        spdy: bytes[end..].to_vec(),
    }
}

/// Decodes a whole direction; each frame with the offset just past it.
pub(crate) fn decode_all(spdy: &[u8]) -> Vec<(Frame, usize)> {
    let mut wire = BytesMut::from(spdy);
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut wire).unwrap() {
        frames.push((frame, spdy.len() - wire.len()));
    }
    assert!(wire.is_empty(), "{} bytes of a partial frame", wire.len());
    frames
}

fn frames(name: &str) -> Vec<Frame> {
    decode_all(&recorded(name).spdy)
        .into_iter()
        .map(|(frame, _)| frame)
        .collect()
}

fn syn(stream_id: u32, headers: &[(&str, &str)]) -> Frame {
    let headers = headers
        .iter()
        .fold(Headers::new(), |h, (name, value)| h.with(name, value));
    Frame::SynStream {
        stream_id,
        associated: 0,
        priority: 0,
        flags: 0,
        headers,
    }
}

fn reply(stream_id: u32) -> Frame {
    Frame::SynReply {
        stream_id,
        flags: 0,
        headers: Headers::new(),
    }
}

fn data(stream_id: u32, bytes: &'static [u8]) -> Frame {
    Frame::Data {
        stream_id,
        flags: 0,
        data: Bytes::from_static(bytes),
    }
}

fn fin(stream_id: u32) -> Frame {
    Frame::Data {
        stream_id,
        flags: FLAG_FIN,
        data: Bytes::new(),
    }
}

fn cancel(stream_id: u32) -> Frame {
    Frame::RstStream {
        stream_id,
        status: rst::CANCEL,
    }
}

fn status_json(frame: &Frame) -> serde_json::Value {
    match frame {
        Frame::Data { data, .. } => serde_json::from_slice(data).unwrap(),
        other => panic!("not a status: {other:?}"),
    }
}

#[test]
fn exec_client_opens_one_stream_per_standard_stream() {
    let recorded = recorded("exec.client");
    assert!(recorded.head.starts_with("POST /exec/"));
    assert!(recorded.head.contains("Upgrade: SPDY/3.1\r\n"));
    assert!(recorded
        .head
        .contains("X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"));
    assert_eq!(
        frames("exec.client"),
        [
            syn(1, &[("streamtype", "error")]),
            syn(3, &[("streamtype", "stdout")]),
            syn(5, &[("streamtype", "stderr")]),
        ]
    );
}

#[test]
fn exec_server_replies_sends_output_and_a_json_exit_status() {
    let recorded = recorded("exec.server");
    assert!(recorded
        .head
        .contains("X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"));
    let frames = frames("exec.server");
    assert_eq!(
        frames[..7],
        [
            reply(1),
            reply(3),
            reply(5),
            data(3, b"out\n"),
            fin(3),
            data(5, b"err\n"),
            fin(5),
        ]
    );
    let status = status_json(&frames[7]);
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(
        status["details"]["causes"],
        serde_json::json!([{"reason": "ExitCode", "message": "3"}])
    );
    assert_eq!(
        frames[8..],
        [
            cancel(1),
            Frame::GoAway {
                last_good: 5,
                status: 0
            }
        ]
    );
}

#[test]
fn our_exit_status_has_containerds_shape() {
    use crate::streaming::remotecommand::{Outcome, StatusFormat};

    let theirs = status_json(&frames("exec.server")[7]);
    let ours = Outcome::ExitCode(3).encode(StatusFormat::Json).unwrap();
    let ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
    for field in ["metadata", "status", "reason", "details"] {
        assert_eq!(ours[field], theirs[field], "{field}");
    }
    let theirs = status_json(&frames("exec-stdin.server")[7]);
    let ours = Outcome::Success.encode(StatusFormat::Json).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&ours).unwrap(),
        theirs
    );
}

#[test]
fn stdin_data_and_its_half_close_decode() {
    let client = frames("exec-stdin.client");
    assert_eq!(
        client[..6],
        [
            syn(1, &[("streamtype", "error")]),
            syn(3, &[("streamtype", "stdin")]),
            syn(5, &[("streamtype", "stdout")]),
            syn(7, &[("streamtype", "stderr")]),
            data(3, b"hello\n"),
            fin(3),
        ]
    );
    assert_eq!(client[6..], [cancel(5), cancel(7)]);
    assert_eq!(frames("exec-stdin.server")[4], data(5, b"hello\n"));
}

#[test]
fn terminal_sessions_carry_resize_json_the_parser_reads() {
    use crate::streaming::remotecommand::ResizeParser;
    use runtimes::types::TerminalSize;

    let client = frames("exec-tty.client");
    assert_eq!(client[3], syn(7, &[("streamtype", "resize")]));
    let mut parser = ResizeParser::default();
    let sizes: Vec<TerminalSize> = client
        .iter()
        .filter_map(|f| match f {
            Frame::Data {
                stream_id: 7, data, ..
            } => Some(parser.push(data)),
            _ => None,
        })
        .flatten()
        .collect();
    let size = |width, height| TerminalSize { width, height };
    assert_eq!(sizes, [size(100, 40), size(132, 50)]);

    let server = frames_of_stream(&frames("exec-tty.server"), 5);
    let text = String::from_utf8_lossy(&server);
    assert!(
        text.contains("40 100\r\n") && text.contains("50 132\r\n"),
        "{text}"
    );
}

fn frames_of_stream(frames: &[Frame], id: u32) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data {
                stream_id, data, ..
            } if *stream_id == id => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn port_forward_pairs_a_data_and_an_error_stream_by_request_id() {
    let recorded = recorded("portforward.client");
    assert!(recorded.head.starts_with("POST /portforward/"));
    assert!(recorded
        .head
        .contains("X-Stream-Protocol-Version: portforward.k8s.io\r\n"));
    let pair = [("port", "80"), ("requestid", "0")];
    assert_eq!(
        frames("portforward.client"),
        [
            syn(1, &[("streamtype", "error"), pair[0], pair[1]]),
            fin(1),
            syn(3, &[("streamtype", "data"), pair[0], pair[1]]),
            data(3, b"GET / HTTP/1.0\r\n\r\n"),
            cancel(3),
        ]
    );
    let server = frames("portforward.server");
    assert_eq!(server[..2], [reply(1), reply(3)]);
    let page = String::from_utf8(frames_of_stream(&server, 3)).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n") && page.contains("Welcome to nginx!"));
    assert_eq!(server[server.len() - 2..], [fin(3), fin(1)]);
}

#[test]
fn a_closed_port_is_reported_on_the_error_stream() {
    let server = frames("portforward-closed.server");
    let error = String::from_utf8(frames_of_stream(&server, 1)).unwrap();
    assert!(
        error.starts_with("error forwarding port 1 to pod "),
        "{error}"
    );
    assert!(error.contains("connection refused"), "{error}");
}

#[test]
fn re_encoded_recordings_decode_to_the_same_frames() {
    for name in [
        "exec.server",
        "exec-tty.server",
        "exec-tty.client",
        "portforward.client",
    ] {
        let original = frames(name);
        let mut encoder = FrameEncoder::default();
        let mut wire = BytesMut::new();
        for frame in original.clone() {
            encoder.encode(frame, &mut wire).unwrap();
        }
        let again: Vec<Frame> = decode_all(&wire).into_iter().map(|(f, _)| f).collect();
        assert_eq!(again, original, "{name}");
    }
}
