//! The filter against h2's own server: what h2 accepts after the filter, and what it
//! refuses without it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::codegen::http;

use super::*;

const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;
const RST_STREAM: u8 = 0x3;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out.to_vec()
}

/// The preface and an empty SETTINGS frame, as every client starts.
fn opening() -> Vec<u8> {
    [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat()
}

/// A gRPC request's end: one empty message, END_STREAM.
fn empty_message(stream: u32) -> Vec<u8> {
    frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0])
}

/// grpcio's first call (see `hpack_tests`) on stream 1, then a second one on stream 3
/// naming `:path`, `:authority`, `content-type` and `te` by dynamic index, as grpcio
/// does.
fn grpcio_two_calls() -> Vec<u8> {
    let first = hex::decode(hpack::tests::GRPCIO_VERSION_CALL).unwrap();
    let second = [0x80 | 68, 0x80 | 67, 0x83, 0x86, 0x80 | 66, 0x80 | 65];
    [
        opening(),
        frame(HEADERS, END_HEADERS, 1, &first),
        empty_message(1),
        frame(HEADERS, END_HEADERS, 3, &second),
        empty_message(3),
    ]
    .concat()
}

/// Runs `input` through a filter in chunks of `chunk` bytes.
fn filtered(input: &[u8], chunk: usize) -> Vec<u8> {
    let (mut filter, mut out) = (Filter::default(), BytesMut::new());
    for piece in input.chunks(chunk) {
        filter.push(piece, &mut out);
    }
    filter.finish(&mut out);
    out.to_vec()
}

/// What h2's server made of one request.
#[derive(Debug)]
struct Seen {
    authority: Option<String>,
    path: String,
    headers: http::HeaderMap,
}

/// What came back for each request stream: h2's answer, or a reset.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    answered: Vec<u32>,
    reset: Vec<u32>,
}

/// Sends `input` to an h2 server (through the adapter when `fix`), answering every
/// request with 200, until each of `streams` was answered or reset.
async fn exchange(input: Vec<u8>, fix: bool, streams: usize) -> (Vec<Seen>, Outcome) {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let io: Pin<Box<dyn IoBoth>> = if fix {
            Box::pin(AuthorityFix::new(server))
        } else {
            Box::pin(server)
        };
        let Ok(mut connection) = h2::server::handshake(io).await else {
            return;
        };
        while let Some(Ok((request, mut respond))) = connection.accept().await {
            let _ = seen_tx.send(Seen {
                authority: request.uri().authority().map(|a| a.to_string()),
                path: request.uri().path().to_string(),
                headers: request.headers().clone(),
            });
            let _ = respond.send_response(http::Response::new(()), true);
        }
    });
    client.write_all(&input).await.unwrap();
    let mut outcome = Outcome::default();
    let mut buf = Vec::new();
    let read = async {
        while outcome.answered.len() + outcome.reset.len() < streams {
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection: {outcome:?}");
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= FRAME_HEADER {
                let len =
                    usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                if buf.len() < FRAME_HEADER + len {
                    break;
                }
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
                let list = match buf[3] {
                    HEADERS => Some(&mut outcome.answered),
                    RST_STREAM => Some(&mut outcome.reset),
                    _ => None,
                };
                if let Some(list) = list.filter(|l| !l.contains(&stream)) {
                    list.push(stream);
                }
                buf.drain(..FRAME_HEADER + len);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer within 10 s");
    drop(client);
    let mut seen = Vec::new();
    while let Some(request) = seen_rx.recv().await {
        seen.push(request);
    }
    (seen, outcome)
}

trait IoBoth: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> IoBoth for T {}

#[tokio::test]
async fn h2_refuses_grpcio_s_authority_without_the_adapter() {
    let (seen, outcome) = exchange(grpcio_two_calls(), false, 2).await;
    assert!(seen.is_empty(), "{seen:?}");
    assert_eq!(outcome.reset, [1, 3]);
}

#[tokio::test]
async fn h2_answers_grpcio_through_the_adapter() {
    let (seen, outcome) = exchange(grpcio_two_calls(), true, 2).await;
    assert_eq!(
        outcome,
        Outcome {
            answered: vec![1, 3],
            reset: vec![]
        }
    );
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            request.authority.as_deref(),
            Some("tmp-2Fauthority-cap-2Frun-2Fberth.sock")
        );
        assert_eq!(request.path, "/runtime.v1.RuntimeService/Version");
        // Indices after the authority still name what the client meant.
        assert_eq!(request.headers["content-type"], "application/grpc");
        assert_eq!(request.headers["te"], "trailers");
    }
    assert_eq!(
        seen[0].headers["user-agent"],
        "grpc-python/1.85.1 grpc-c/58.0.0 (linux; chttp2)"
    );
}

/// `:authority` as a Huffman-coded path added to the table, in a padded, prioritized
/// HEADERS frame continued over CONTINUATION frames, with a 40 000-byte header that
/// makes the rewritten block span several frames.
#[tokio::test]
async fn split_padded_prioritized_huffman_blocks_are_rewritten() {
    let big = vec![b'z'; 40_000];
    let coded = huffman::encode(b"/run/berth.sock");
    let mut block = vec![0x83, 0x86, 0x84, 0x41, 0x80 | coded.len() as u8];
    block.extend_from_slice(&coded);
    block.extend_from_slice(&[0x00, 5]);
    block.extend_from_slice(b"x-big");
    hpack::encode_integer(&mut block, 0x00, 7, big.len());
    block.extend_from_slice(&big);
    // HEADERS: pad length 3, priority (5 bytes), the first 10 000 bytes, padding.
    let (head, tail) = block.split_at(10_000);
    let mut headers = vec![3];
    headers.extend_from_slice(&[0, 0, 0, 0, 15]);
    headers.extend_from_slice(head);
    headers.extend_from_slice(&[0, 0, 0]);
    let mut input = opening();
    input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &headers));
    let pieces: Vec<&[u8]> = tail.chunks(16_384).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let flags = if i + 1 == pieces.len() {
            END_HEADERS
        } else {
            0
        };
        input.extend(frame(CONTINUATION, flags, 1, piece));
    }
    // A second call naming the rewritten entry by index.
    input.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &[0x83, 0x86, 0x84, 0xbe],
    ));

    let (seen, outcome) = exchange(input.clone(), true, 2).await;
    assert_eq!(
        outcome,
        Outcome {
            answered: vec![1, 3],
            reset: vec![]
        }
    );
    assert_eq!(seen[0].authority.as_deref(), Some("-run-berth.sock"));
    assert_eq!(seen[0].headers["x-big"].len(), big.len());
    assert_eq!(seen[1].authority.as_deref(), Some("-run-berth.sock"));
    // The rewrite was split at 16 KiB, the first frame keeping the priority.
    let out = filtered(&input, input.len());
    let mut at = opening().len();
    let mut kinds = Vec::new();
    while at < out.len() {
        let len =
            usize::from(out[at]) << 16 | usize::from(out[at + 1]) << 8 | usize::from(out[at + 2]);
        assert!(len <= MAX_FRAME);
        kinds.push((out[at + 3], out[at + 4]));
        at += FRAME_HEADER + len;
    }
    assert_eq!(
        kinds,
        [
            (HEADERS, PRIORITY | END_STREAM),
            (CONTINUATION, 0),
            (CONTINUATION, END_HEADERS),
            (HEADERS, END_HEADERS | END_STREAM),
        ]
    );
}

#[test]
fn chunking_does_not_change_the_output() {
    let input = grpcio_two_calls();
    let whole = filtered(&input, input.len());
    assert_ne!(whole, input);
    assert_eq!(whole.len(), input.len());
    for chunk in [1, 2, 3, 5, 8, 9, 10, 17, 100, 1000] {
        assert_eq!(filtered(&input, chunk), whole, "chunks of {chunk}");
    }
}

#[test]
fn what_needs_no_rewrite_passes_byte_for_byte() {
    // RFC 7541 C.4 requests (valid authority, Huffman, dynamic table).
    let blocks = [
        "828684418cf1e3c2e5f23a6ba0ab90f4ff",
        "828684be5886a8eb10649cbf",
        "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
    ];
    let mut valid = opening();
    for (i, block) in blocks.iter().enumerate() {
        let stream = 2 * i as u32 + 1;
        valid.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &hex::decode(block).unwrap(),
        ));
    }
    valid.extend(frame(SETTINGS, 0x1, 0, &[]));
    // Not HTTP/2 at all.
    let http1 = b"GET / HTTP/1.1\r\nHost: /run/berth.sock\r\n\r\n".to_vec();
    // A header block interrupted by a DATA frame (h2 closes the connection on it).
    let bad_authority = [&[0x41, 3][..], b"a/b"].concat();
    let interrupted = [
        opening(),
        frame(HEADERS, 0, 1, &bad_authority),
        empty_message(1),
        frame(HEADERS, END_HEADERS, 3, &bad_authority),
    ]
    .concat();
    // A header block larger than the adapter holds back.
    let mut oversized = [opening(), frame(HEADERS, 0, 1, &bad_authority)].concat();
    for _ in 0..(MAX_BLOCK / 16_384 + 1) {
        oversized.extend(frame(CONTINUATION, 0, 1, &[0x82; 16_384]));
    }
    oversized.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
    // Undecodable HPACK (index 70 of an empty table), then a bad authority.
    let undecodable = [
        opening(),
        frame(HEADERS, END_HEADERS, 1, &[0x80 | 70]),
        frame(HEADERS, END_HEADERS, 3, &bad_authority),
    ]
    .concat();
    for (name, input) in [
        ("valid", valid),
        ("http1", http1),
        ("interrupted", interrupted),
        ("oversized", oversized),
        ("undecodable", undecodable),
    ] {
        for chunk in [1, 7, 4096, input.len()] {
            assert!(
                filtered(&input, chunk) == input,
                "{name} in chunks of {chunk}"
            );
        }
    }
}

#[tokio::test]
async fn the_adapter_hands_bytes_over_as_they_come() {
    // A DATA frame's payload reaches the server before the frame is complete.
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let mut fix = AuthorityFix::new(server);
    let data = frame(DATA, 0, 1, &[7; 100]);
    let head = [opening(), data[..FRAME_HEADER + 10].to_vec()].concat();
    client.write_all(&head).await.unwrap();
    let mut got = vec![0u8; head.len()];
    fix.read_exact(&mut got).await.unwrap();
    assert_eq!(got, head);
    // A header block still open when the client closes reaches the server then.
    let open_block = frame(HEADERS, 0, 3, &[0x82]);
    client.write_all(&data[FRAME_HEADER + 10..]).await.unwrap();
    client.write_all(&open_block).await.unwrap();
    let mut rest = vec![0u8; 90];
    fix.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, data[FRAME_HEADER + 10..]);
    drop(client);
    let mut rest = Vec::new();
    fix.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, open_block);
}
