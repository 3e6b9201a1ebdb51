use super::*;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn rewriter(max_size: usize) -> Rewriter {
    Rewriter {
        max_size,
        ..Rewriter::default()
    }
}

/// Rewrites each block in turn; the table's size after each.
fn sizes(rewriter: &mut Rewriter, blocks: &[&str]) -> Vec<usize> {
    blocks
        .iter()
        .map(|block| {
            let block = unhex(block);
            assert_eq!(
                rewriter.rewrite(&block),
                Ok(None),
                "a valid block was rewritten"
            );
            rewriter.size
        })
        .collect()
}

#[test]
fn follows_the_rfc_examples_table_sizes_and_all() {
    // RFC 7541 C.3 (requests, plain literals) and C.4 (the same, Huffman-coded):
    // `:authority: www.example.com` is valid, so nothing changes.
    let plain = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    assert_eq!(sizes(&mut Rewriter::default(), &plain), [57, 110, 164]);
    let huffman = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    assert_eq!(sizes(&mut Rewriter::default(), &huffman), [57, 110, 164]);
    // C.5: responses in a 256-byte table, with evictions.
    let responses = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ];
    let mut table = rewriter(256);
    assert_eq!(sizes(&mut table, &responses), [222, 222, 215]);
    assert_eq!(table.entries.len(), 3);
}

/// What grpcio 1.85.1 sent as its first request on `unix:///tmp/authority-cap/run/berth.sock`
/// (and on `unix:/tmp/…`): `:path` and `:authority` as new-name literals with
/// incremental indexing, the authority percent-encoded.
pub(crate) const GRPCIO_VERSION_CALL: &str = "40053a70617468222f72756e74696d652e76312e52756e74696d65536572766963652f56657273696f6e400a3a617574686f7269747926746d70253246617574686f726974792d63617025324672756e25324662657274682e736f636b8386400c636f6e74656e742d74797065106170706c69636174696f6e2f677270634002746508747261696c6572734014677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c6174652c20677a6970400c677270632d74696d656f7574023253400a757365722d6167656e7430677270632d707974686f6e2f312e38352e3120677270632d632f35382e302e3020286c696e75783b2063687474703229";

#[test]
fn grpcio_s_authority_is_rewritten_in_place_at_the_same_length() {
    let block = unhex(GRPCIO_VERSION_CALL);
    let mut rewriter = Rewriter::default();
    let rewritten = rewriter.rewrite(&block).unwrap().expect("no rewrite");
    assert_eq!(rewritten.len(), block.len());
    let (old, new) = (
        b"tmp%2Fauthority-cap%2Frun%2Fberth.sock",
        b"tmp-2Fauthority-cap-2Frun-2Fberth.sock",
    );
    let at = block.windows(old.len()).position(|w| w == old).unwrap();
    assert_eq!(&rewritten[at..at + new.len()], new);
    assert_eq!(rewritten[..at], block[..at]);
    assert_eq!(rewritten[at + new.len()..], block[at + old.len()..]);
    // Seven fields were added; the authority is the sixth newest (index 67), and it is
    // valid now, so a second call naming it by index goes through unchanged.
    assert_eq!(rewriter.entries.len(), 7);
    assert_eq!(rewriter.dynamic(67).unwrap().authority, Authority::Valid);
    assert_eq!(
        rewriter.rewrite(&[0x80 | 68, 0x80 | 67, 0x83, 0x86]),
        Ok(None)
    );
}

#[test]
fn every_representation_of_a_bad_authority_is_rewritten() {
    let path = b"/run/berth.sock";
    let coded = huffman::encode(path);
    let mut huffman_value = vec![0x80 | coded.len() as u8];
    huffman_value.extend_from_slice(&coded);
    let mut plain_value = vec![path.len() as u8];
    plain_value.extend_from_slice(path);
    let expected_value = {
        let mut v = vec![path.len() as u8];
        v.extend_from_slice(b"-run-berth.sock");
        v
    };
    // (first byte(s) naming the field, value) → first byte(s) kept.
    let name_literal = [&[0x0a][..], b":authority"].concat();
    for (pattern, name) in [
        (0x41u8, vec![]),             // incremental indexing, static name
        (0x01, vec![]),               // without indexing
        (0x11, vec![]),               // never indexed
        (0x40, name_literal.clone()), // incremental indexing, literal name
        (0x10, name_literal.clone()),
    ] {
        for value in [&plain_value, &huffman_value] {
            let block = [&[pattern][..], &name, value].concat();
            let mut rewriter = Rewriter::default();
            let out = rewriter.rewrite(&block).unwrap().expect("not rewritten");
            assert_eq!(out, [&[pattern][..], &name, &expected_value].concat());
            let indexed = pattern & 0xc0 == 0x40;
            assert_eq!(rewriter.entries.len(), usize::from(indexed));
            if indexed {
                assert_eq!(rewriter.size, 32 + 10 + path.len());
            }
        }
    }
}

#[test]
fn a_bad_authority_named_by_a_dynamic_entry_s_name_is_rewritten() {
    let mut rewriter = Rewriter::default();
    // `:authority: localhost` indexed, then a literal `:authority` named by index 62.
    let first = [&[0x41, 9][..], b"localhost"].concat();
    assert_eq!(rewriter.rewrite(&first), Ok(None));
    let second = [&[0x40 | 62, 3][..], b"a/b"].concat();
    let out = rewriter.rewrite(&second).unwrap().unwrap();
    assert_eq!(out, [&[0x7e, 3][..], b"a-b"].concat());
    assert_eq!(rewriter.size, 2 * 42 + 9 + 3);
}

#[test]
fn empty_authorities() {
    // The static `:authority` (empty) by index: a literal that leaves the table alone.
    let mut rewriter = Rewriter::default();
    let out = rewriter.rewrite(&[0x81]).unwrap().unwrap();
    assert_eq!(out, [&[0x01, 9][..], b"localhost"].concat());
    assert!(rewriter.entries.is_empty());
    // An empty one without indexing gets a value; one with indexing has no same-length
    // replacement and goes as sent (h2 refuses that request, as before), and so do
    // later references to it.
    assert_eq!(
        rewriter.rewrite(&[0x01, 0]).unwrap().unwrap(),
        [&[0x01, 9][..], b"localhost"].concat()
    );
    assert_eq!(rewriter.rewrite(&[0x41, 0]), Ok(None));
    assert_eq!(rewriter.dynamic(62).unwrap().authority, Authority::Invalid);
    assert_eq!(
        rewriter.rewrite(&[0x80 | 62]).unwrap().unwrap(),
        [&[0x01, 9][..], b"localhost"].concat()
    );
}

#[test]
fn sanitized_values_are_accepted_by_http() {
    for byte in 0..=255u8 {
        for value in [vec![byte], vec![b'a', byte, b'b'], vec![byte; 7]] {
            let new = sanitized(&value, true).unwrap();
            assert_eq!(new.len(), value.len());
            assert!(acceptable(&new), "{value:?} -> {new:?}");
        }
    }
    for bad in [
        &b"/run/berth.sock"[..],
        b"%2Frun",
        b"a:1:2",
        b"[::1",
        b"x@",
        b"\xff",
    ] {
        assert!(!acceptable(bad), "{bad:?}");
    }
    for good in [&b"localhost"[..], b"berth:443", b"[::1]:80", b"tmp-2Frun"] {
        assert!(acceptable(good), "{good:?}");
    }
}

#[test]
fn integers_round_trip_at_every_prefix() {
    for prefix in 1..=8u8 {
        for value in [0, 1, 30, 31, 126, 127, 128, 255, 256, 1337, 65_535, 1 << 20] {
            let mut out = Vec::new();
            encode_integer(&mut out, 0, prefix, value);
            let mut input = Input {
                block: &out,
                pos: 0,
            };
            assert_eq!(input.integer(prefix), Ok(value), "{value} in {prefix} bits");
            assert!(input.done());
        }
    }
    // RFC 7541 C.1.2: 1337 in 5 bits.
    let mut out = Vec::new();
    encode_integer(&mut out, 0, 5, 1337);
    assert_eq!(out, [31, 154, 10]);
}

#[test]
fn malformed_blocks_are_errors_not_panics() {
    let cases: [(&[u8], HpackError); 7] = [
        (&[0x80], HpackError::Index(0)),
        (&[0x80 | 62], HpackError::Index(62)),
        (&[0x41, 0x05, b'a'], HpackError::Truncated),
        (&[0x40, 0x81, 0x00, 0x00], HpackError::Huffman),
        (
            &[0x3f, 0xe1, 0xff, 0xff, 0x7f],
            HpackError::TableSize(268_435_456),
        ),
        (&[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff], HpackError::Integer),
        (&[0x7f], HpackError::Truncated),
    ];
    for (block, error) in cases {
        assert_eq!(Rewriter::default().rewrite(block), Err(error), "{block:x?}");
    }
    // A size update within bounds evicts.
    let mut rewriter = Rewriter::default();
    rewriter.rewrite(&[0x41, 1, b'a']).unwrap();
    assert_eq!(rewriter.entries.len(), 1);
    rewriter.rewrite(&[0x20]).unwrap();
    assert!(rewriter.entries.is_empty());
    assert_eq!(rewriter.size, 0);
}
