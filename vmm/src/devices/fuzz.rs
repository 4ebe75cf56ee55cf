//! Stable-Rust fuzzing support for the guest-facing devices: a seeded PRNG and a
//! time-bounded driver that runs one generated case per seed and names the seed of a
//! case that panics, so it can be replayed.
//!
//! Each target runs for [`DEFAULT_SECS`] seconds in `cargo test`; `ISOL_FUZZ_SECS=N`
//! runs each for N seconds instead, `ISOL_FUZZ_SEED=S` starts from seed S (default: a
//! fixed seed, so a plain `cargo test` is reproducible), and `ISOL_FUZZ_SEED=S
//! ISOL_FUZZ_CASES=1` replays one case. Example (5 minutes per target):
//! `ISOL_FUZZ_SECS=300 cargo test -p isol-vmm --lib fuzz_ -- --nocapture`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// Seconds each fuzz target runs in a plain `cargo test`.
pub const DEFAULT_SECS: f64 = 2.0;
/// First seed when `ISOL_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x1501_f022;

/// xorshift64*: a tiny deterministic PRNG.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: never zero, and nearby seeds diverge at once.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One element of `v` (not empty).
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }

    /// A u32 that is often interesting: 0, 1, all ones, a power of two and its
    /// neighbours, one of `near` (give or take a little), or random.
    pub fn u32_near(&mut self, near: &[u64]) -> u32 {
        match self.below(6) {
            0 => self.pick(&[0, 1, 2, u32::MAX, u32::MAX - 1, 0x8000_0000]),
            1 => {
                let p = 1u32 << self.below(32);
                p.wrapping_add(self.pick(&[0, 1, u32::MAX]))
            }
            2 | 3 if !near.is_empty() => {
                let base = self.pick(near);
                let delta = self.below(9) as i64 - 4;
                base.wrapping_add_signed(delta) as u32
            }
            _ => self.next() as u32,
        }
    }
}

/// What a fuzz run did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Cases run.
    pub cases: u64,
    /// Wall time.
    pub elapsed: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Runs `case(seed)` for consecutive seeds until the time budget is spent (at least one
/// case). A panicking case is reported with its seed, then the panic goes on (the test
/// fails). Prints a one-line summary (seen with `--nocapture`).
pub fn run(name: &str, mut case: impl FnMut(u64)) -> Report {
    let secs = std::env::var("ISOL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_SECS);
    let budget = Duration::from_secs_f64(secs);
    let max_cases = env_u64("ISOL_FUZZ_CASES").unwrap_or(u64::MAX);
    let first = env_u64("ISOL_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let start = Instant::now();
    let mut cases = 0u64;
    while cases == 0 || (start.elapsed() < budget && cases < max_cases) {
        let seed = first.wrapping_add(cases);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| case(seed))) {
            eprintln!(
                "fuzz {name}: case with seed {seed:#x} failed; replay with \
                 ISOL_FUZZ_SEED={seed:#x} ISOL_FUZZ_CASES=1"
            );
            std::panic::resume_unwind(p);
        }
        cases += 1;
    }
    let report = Report {
        cases,
        elapsed: start.elapsed(),
    };
    eprintln!(
        "fuzz {name}: {} cases from seed {first:#x} in {:.1} s, 0 crashes",
        report.cases,
        report.elapsed.as_secs_f64()
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rng_deterministic_and_seeds_differ() {
        let (mut a, mut b, mut c) = (Rng::new(1), Rng::new(1), Rng::new(2));
        let xs: Vec<u64> = (0..8).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        assert!((0..1000).all(|_| a.below(7) < 7));
    }
}
