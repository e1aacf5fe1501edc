//! A tiny deterministic pseudo-random generator (splitmix64).
//!
//! The double must produce the same repositories, digests and fault decisions for the same seed on
//! every machine and every run, so it carries its own generator instead of depending on `rand`.

/// The splitmix64 finaliser: a good 64-bit mix, also used to derive independent streams.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A splitmix64 stream.
#[derive(Clone, Debug)]
pub(super) struct Prng(u64);

impl Prng {
    /// A stream for `seed`.
    pub(super) fn new(seed: u64) -> Self {
        Prng(seed)
    }

    /// An independent stream for item `stream` under `seed`: used where a decision must depend on
    /// the seed and an identifier (e.g. a request number) but not on what was drawn before.
    pub(super) fn derive(seed: u64, stream: u64) -> Self {
        Prng(mix(seed ^ mix(stream.wrapping_add(0x9E37_79B9_7F4A_7C15))))
    }

    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A uniform value in `0..n` (`n > 0`; the modulo bias is negligible for the small `n` used).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A uniform value in `lo..=hi`.
    pub(super) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// A uniform value in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `len` lowercase hex digits.
    pub(super) fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(len);
        let mut bits = 0u64;
        for i in 0..len {
            if i % 16 == 0 {
                bits = self.next_u64();
            }
            out.push(DIGITS[(bits & 0xF) as usize] as char);
            bits >>= 4;
        }
        out
    }
}
