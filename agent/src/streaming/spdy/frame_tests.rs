//! Frames against their wire format.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{rst, Frame, FrameDecoder, FrameEncoder, Setting, FLAG_FIN};
use super::headers::Headers;

fn encode_all(frames: Vec<Frame>) -> BytesMut {
    let mut encoder = FrameEncoder::default();
    let mut wire = BytesMut::new();
    for frame in frames {
        encoder.encode(frame, &mut wire).unwrap();
    }
    wire
}

fn decode_all(mut wire: BytesMut) -> Vec<Frame> {
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut wire).unwrap() {
        frames.push(frame);
    }
    assert!(wire.is_empty(), "{} bytes left over", wire.len());
    frames
}

#[test]
fn every_frame_type_round_trips() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated: 0,
            priority: 3,
            flags: 0,
            headers: Headers::new().with("streamtype", "error"),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: Headers::new(),
        },
        Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        },
        Frame::RstStream {
            stream_id: 3,
            status: rst::CANCEL,
        },
        Frame::Settings {
            flags: 0,
            entries: vec![Setting {
                flags: 1,
                id: 7,
                value: 65536,
            }],
        },
        Frame::Ping { id: 1 },
        Frame::GoAway {
            last_good: 5,
            status: 0,
        },
        Frame::Headers {
            stream_id: 5,
            flags: FLAG_FIN,
            headers: Headers::new().with("a", "b"),
        },
        Frame::WindowUpdate {
            stream_id: 5,
            delta: 1024,
        },
    ];
    assert_eq!(decode_all(encode_all(frames.clone())), frames);
}

#[test]
fn fixed_frames_have_the_spdy3_layout() {
    let wire = encode_all(vec![
        Frame::Ping { id: 1 },
        Frame::RstStream {
            stream_id: 3,
            status: rst::CANCEL,
        },
        Frame::Data {
            stream_id: 5,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"ok"),
        },
    ]);
    assert_eq!(
        &wire[..],
        [
            0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1, // PING 1
            0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5, // RST_STREAM 3 CANCEL
            0, 0, 0, 5, 1, 0, 0, 2, b'o', b'k', // DATA 5 FIN "ok"
        ]
    );
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let wire = encode_all(vec![Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from_static(b"abcdef"),
    }]);
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let frame = decoder.decode(&mut buf).unwrap();
        assert_eq!(frame.is_some(), i == wire.len() - 1, "after byte {i}");
    }
}

#[test]
fn malformed_frames_are_errors() {
    let bad: [&[u8]; 5] = [
        &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1], // SPDY/2
        &[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 0],    // short PING
        &[0, 0, 0, 0, 0, 0, 0, 1, b'x'],          // DATA on stream 0
        &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5], // RST_STREAM stream 0
        &[0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 9], // SETTINGS claims 9 entries
    ];
    for wire in bad {
        let mut buf = BytesMut::from(wire);
        assert!(
            FrameDecoder::default().decode(&mut buf).is_err(),
            "{wire:?}"
        );
    }
}

#[test]
fn unknown_control_frames_are_skipped() {
    let mut buf = BytesMut::from(&[0x80, 3, 0, 0x42, 0, 0, 0, 2, 9, 9][..]);
    let frame = FrameDecoder::default().decode(&mut buf).unwrap();
    assert_eq!(frame, Some(Frame::Unknown { kind: 0x42 }));
    assert!(buf.is_empty());
}
