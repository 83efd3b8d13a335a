//! Deterministic pseudo-random numbers for the simulator: SplitMix64, and a
//! counter-based hash so that a link's delay is a function of the send time
//! (the same network for every policy, however many messages it sends).

/// SplitMix64: small, fast, and every seed (zero included) is fine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A generator for one named stream of a seed: streams of one seed are
    /// independent of each other.
    pub fn stream(seed: u64, a: u64, b: u64) -> Self {
        Rng(mix(
            seed ^ mix(a.wrapping_add(0x9E37_79B9_7F4A_7C15) ^ mix(b))
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Exponentially distributed with mean `mean`.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln()
    }
}

/// The SplitMix64 finaliser: a bijective scramble of 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 53 random bits as a float in `[0, 1)`.
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Uniform in `[0, 1)`, a pure function of its keys.
pub fn hash_unit(seed: u64, a: u64, b: u64, c: u64) -> f64 {
    unit(mix(seed
        ^ mix(a ^ mix(
            b.wrapping_add(0x632B_E59B_D9B4_E019) ^ mix(c)
        ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let mut rng = Rng::new(7);
        let n = 10_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            sum += u;
        }
        assert!((sum / n as f64 - 0.5).abs() < 0.02);
    }

    #[test]
    fn streams_differ_and_replay() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(1, 2, 3).next_u64()).collect();
        assert!(a.iter().all(|x| *x == a[0]), "same stream, same numbers");
        assert_ne!(
            Rng::stream(1, 2, 3).next_u64(),
            Rng::stream(1, 2, 4).next_u64()
        );
        assert_eq!(hash_unit(1, 2, 3, 4), hash_unit(1, 2, 3, 4));
        assert_ne!(hash_unit(1, 2, 3, 4), hash_unit(1, 2, 3, 5));
    }
}
