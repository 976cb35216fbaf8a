//! What the genomics tests share.

/// Deterministic draws (xorshift): the same numbers on every run.
pub struct Rng(pub u64);

impl Rng {
    #[allow(dead_code)] // not every test file draws raw numbers
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 11) % n
    }
}
