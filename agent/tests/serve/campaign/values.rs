//! The campaign's deterministic randomness: a splitmix64 generator and the values it
//! draws (strings, numbers, maps) with a bias toward edge cases.

use std::collections::HashMap;

/// splitmix64: small, fast and the same on every machine for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `[a-z0-9]` of `len` characters.
    pub fn alnum(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| CHARS[self.below(CHARS.len())] as char)
            .collect()
    }

    /// A name Kubernetes could send: `<word>-<suffix>`.
    pub fn k8s_name(&mut self) -> String {
        let word = *self.pick(&["web", "db", "cache", "job", "app", "sidecar"]);
        let len = 1 + self.below(8);
        format!("{word}-{}", self.alnum(len))
    }

    /// A string of edge cases: empty, huge, unicode, control characters, path
    /// traversal, shell metacharacters, whitespace, or one of `ids` (whole, a prefix, in
    /// upper case).
    pub fn text(&mut self, ids: &[String]) -> String {
        match self.below(13) {
            0 => String::new(),
            1 => {
                let len = 1 + self.below(12);
                self.alnum(len)
            }
            2 => self.k8s_name(),
            // About 1 in 100 draws: up to ~1 MB.
            3 if self.chance(8) => "a".repeat(64 << 10 | self.below(1 << 20)),
            3 => "x".repeat(200 + self.below(400)),
            4 => self
                .pick(&[
                    "ünïcødé",
                    "名前-🚀",
                    "\u{202e}evil",
                    "\u{feff}bom",
                    "ǅ",
                    "𝔘",
                ])
                .to_string(),
            5 => {
                let c = *self.pick(&['\0', '\n', '\r', '\t', '\u{7f}', '\u{85}', '\u{1b}']);
                let base = self.k8s_name();
                let at = self.below(base.len() + 1);
                format!("{}{c}{}", &base[..at], &base[at..])
            }
            6 => self
                .pick(&[
                    "../../../../etc/passwd",
                    "/etc/shadow",
                    "a/../../b",
                    "..",
                    ".",
                    "/",
                    "//",
                    "with/slash",
                    "./x",
                    "/proc/self/root",
                    "~root",
                ])
                .to_string(),
            7 => self
                .pick(&[
                    "$(id)", "`id`", "%s%n%x", "{{.}}", "'\";|&<>", "${IFS}", "*", "-rf",
                ])
                .to_string(),
            8 => self.pick(&[" ", "  a  ", "\u{a0}", "a b"]).to_string(),
            9 if !ids.is_empty() => {
                let id = self.pick(ids).clone();
                match self.below(4) {
                    0 => id,
                    1 => id[..1 + self.below(id.len().max(1))].to_string(),
                    2 => id.to_uppercase(),
                    _ => format!("{id}x"),
                }
            }
            10 => {
                let len = 1 + self.below(16);
                (0..len)
                    .filter_map(|_| char::from_u32(self.next() as u32 % 0x11_0000))
                    .collect()
            }
            11 => format!("{:064x}", self.next()),
            _ => self.k8s_name(),
        }
    }

    /// A number at the edges of `i64` or a small one.
    pub fn number(&mut self) -> i64 {
        match self.below(8) {
            0 => 0,
            1 => -1,
            2 => i64::MIN,
            3 => i64::MAX,
            4 => i64::from(i32::MAX) + 1,
            5 => -(self.below(1 << 20) as i64),
            _ => self.below(70_000) as i64,
        }
    }

    /// An `i32` at its edges or a small one.
    pub fn int(&mut self) -> i32 {
        match self.below(6) {
            0 => i32::MIN,
            1 => i32::MAX,
            2 => -1,
            3 => 0,
            _ => self.below(70_000) as i32,
        }
    }

    /// A label or annotation map: small mostly; sometimes one over berth's 256 KiB
    /// limit, many entries, or (rarely) one just under the limit.
    pub fn map(&mut self, ids: &[String]) -> HashMap<String, String> {
        match self.below(20) {
            0 => HashMap::from([(
                "big".to_string(),
                "v".repeat(300 << 10 | self.below(1 << 20)),
            )]),
            1 => (0..2000)
                .map(|i| (format!("k{i}"), format!("{i:0150}")))
                .collect(),
            2 if self.chance(20) => HashMap::from([("near".to_string(), "n".repeat(120 << 10))]),
            _ => {
                let n = self.below(6);
                (0..n).map(|_| (self.text(ids), self.text(ids))).collect()
            }
        }
    }

    /// A list of strings of `text`.
    pub fn texts(&mut self, ids: &[String]) -> Vec<String> {
        let n = self.below(4);
        (0..n).map(|_| self.text(ids)).collect()
    }
}
