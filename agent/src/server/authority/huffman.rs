//! HPACK's Huffman code (RFC 7541 Appendix B), decoding only.
//!
//! The code is canonical: every symbol's code follows from the code lengths alone,
//! assigned in order of (length, symbol). So the table below is the RFC's lengths
//! column, and the decoding tree is built from it once.

use std::sync::OnceLock;

/// Code length in bits of each symbol 0..=255 and of EOS (256), from RFC 7541 Appendix B.
#[rustfmt::skip]
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
];

const EOS: u16 = 256;
/// A child slot: 0 is "no child yet", `LEAF | symbol` a leaf, anything else a node index.
const LEAF: u16 = 0x8000;

/// Each symbol's code, right-aligned, and its length: canonical, from [`LENGTHS`].
fn codes() -> [(u32, u8); 257] {
    let mut symbols: Vec<u16> = (0..=EOS).collect();
    symbols.sort_by_key(|&s| (LENGTHS[usize::from(s)], s));
    let mut codes = [(0u32, 0u8); 257];
    let (mut code, mut previous_length) = (0u32, LENGTHS[usize::from(symbols[0])]);
    for (i, &symbol) in symbols.iter().enumerate() {
        let length = LENGTHS[usize::from(symbol)];
        if i > 0 {
            code = (code + 1) << (length - previous_length);
        }
        previous_length = length;
        codes[usize::from(symbol)] = (code, length);
    }
    codes
}

/// The decoding tree: node `i` has children `[zero, one]`; the root is node 0.
fn tree() -> &'static [[u16; 2]] {
    static TREE: OnceLock<Vec<[u16; 2]>> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut nodes = vec![[0u16; 2]];
        for (symbol, &(code, length)) in (0..=EOS).zip(codes().iter()) {
            let mut node = 0usize;
            for bit in (0..length).rev() {
                let branch = ((code >> bit) & 1) as usize;
                if bit == 0 {
                    nodes[node][branch] = LEAF | symbol;
                } else {
                    if nodes[node][branch] == 0 {
                        nodes.push([0, 0]);
                        nodes[node][branch] = (nodes.len() - 1) as u16;
                    }
                    node = usize::from(nodes[node][branch]);
                }
            }
        }
        nodes
    })
}

/// Encodes `input`, padded with ones. Only the tests need an encoder: berth writes
/// its rewritten values as plain literals.
#[cfg(test)]
pub fn encode(input: &[u8]) -> Vec<u8> {
    let codes = codes();
    let (mut out, mut bits, mut held) = (Vec::new(), 0u64, 0u32);
    for &byte in input {
        let (code, length) = codes[usize::from(byte)];
        bits = bits << length | u64::from(code);
        held += u32::from(length);
        while held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
        }
    }
    if held > 0 {
        out.push((bits << (8 - held)) as u8 | (0xff >> held));
    }
    out
}

/// A Huffman-coded string the RFC calls a decoding error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHuffman;

/// Decodes `input`. Errors as RFC 7541 section 5.2 says: the EOS symbol in the string,
/// or padding longer than 7 bits or not made of the EOS code's leading ones.
pub fn decode(input: &[u8]) -> Result<Vec<u8>, InvalidHuffman> {
    let tree = tree();
    let mut out = Vec::with_capacity(input.len() * 8 / 5);
    let mut node = 0usize;
    // Bits read since the last whole symbol, and whether all of them were ones.
    let (mut pending_bits, mut all_ones) = (0u32, true);
    for &byte in input {
        for bit in (0..8).rev() {
            let branch = usize::from((byte >> bit) & 1);
            pending_bits += 1;
            all_ones &= branch == 1;
            match tree[node][branch] {
                next if next & LEAF != 0 => {
                    let symbol = next & !LEAF;
                    if symbol == EOS {
                        return Err(InvalidHuffman);
                    }
                    out.push(symbol as u8);
                    node = 0;
                    (pending_bits, all_ones) = (0, true);
                }
                // Unreachable for a complete code, which this one is.
                0 => return Err(InvalidHuffman),
                next => node = usize::from(next),
            }
        }
    }
    if pending_bits > 7 || !all_ones {
        return Err(InvalidHuffman);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 7541 C.4.1, C.4.2, C.4.3 and C.6.1.
        let cases = [
            ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
            ("a8eb 1064 9cbf", "no-cache"),
            ("25a8 49e9 5ba9 7d7f", "custom-key"),
            ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
            ("6402", "302"),
            ("aec3 771a 4b", "private"),
            (
                "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
                "https://www.example.com",
            ),
        ];
        for (coded, plain) in cases {
            assert_eq!(
                decode(&decode_hex(coded)).unwrap(),
                plain.as_bytes(),
                "{plain}"
            );
        }
        assert_eq!(decode(&[]).unwrap(), b"");
    }

    #[test]
    fn every_symbol_round_trips_through_its_canonical_code() {
        // Spot checks against the RFC's code column: '0' 00000, 'a' 00011, '%' 010101,
        // 0xff 11111111111111111111101110, EOS thirty ones.
        let tree = tree();
        let walk = |code: u32, length: u8| {
            let mut node = 0usize;
            for bit in (0..length).rev() {
                let next = tree[node][((code >> bit) & 1) as usize];
                if next & LEAF != 0 {
                    return (bit == 0).then_some(next & !LEAF);
                }
                node = usize::from(next);
            }
            None
        };
        assert_eq!(walk(0b00000, 5), Some(u16::from(b'0')));
        assert_eq!(walk(0b00011, 5), Some(u16::from(b'a')));
        assert_eq!(walk(0b010101, 6), Some(u16::from(b'%')));
        assert_eq!(walk(0x3ffffee, 26), Some(0xff));
        assert_eq!(walk(0x3fffffff, 30), Some(EOS));
        // A complete code: every node has both children.
        assert!(tree.iter().all(|n| n[0] != 0 && n[1] != 0));
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&all)).unwrap(), all);
        assert_eq!(
            encode(b"www.example.com"),
            decode_hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")
        );
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // "0" is 00000; padded with 000 instead of ones.
        assert_eq!(decode(&[0b0000_0000]), Err(InvalidHuffman));
        // A whole byte of padding (8 ones) is too long.
        assert_eq!(decode(&[0b0000_0111, 0xff]), Err(InvalidHuffman));
        // EOS spelled out (30 ones, 2 ones of padding).
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(InvalidHuffman));
        // '0' with proper padding.
        assert_eq!(decode(&[0b0000_0111]).unwrap(), b"0");
    }
}
