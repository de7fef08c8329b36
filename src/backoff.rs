//! The reconnect delay schedule: exponential backoff with full jitter.
//!
//! A pure function of the attempt number and a random draw, with no clock and no sleep,
//! so it is tested and simulated without a runtime (see `examples/herd.rs`).
//!
//! The delay before retry `k` (0 = the first retry after a drop or a failed attempt) is
//! drawn uniformly from `[0, min(cap, SPREAD × base × 2^k))`. The first retry is jittered
//! too: when a master restart drops every agent at the same instant, they must not all
//! come back in the same second.
//!
//! Why `SPREAD` = 3: the Go agent sleeps a fixed `agent_reconnect_backoff` (5 s), so
//! 10,000 agents dropped together all return in one second. Full jitter over a window of
//! `W` seconds spreads them at about `N / W` per second, so reaching a tenth of the fixed
//! policy's peak needs `W` ≥ 10 s *after* random clustering; a window of 2 × base = 10 s
//! still peaks at about 1,040 connects/s in simulation, 3 × base = 15 s at about 720–960/s
//! for a master back within 0–10 s, with a median reconnect of 7.5–17 s. Figures and the
//! command that reproduces them are in the README.

use std::time::Duration;

/// Multiplier from the configured base delay to the first retry's jitter window.
pub const SPREAD: u32 = 3;

/// The default cap on one delay.
pub const DEFAULT_CAP: Duration = Duration::from_secs(60);

/// A reconnect schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// `agent_reconnect_backoff`: the scale of the first retry's window.
    pub base: Duration,
    /// No delay exceeds this.
    pub cap: Duration,
}

impl Backoff {
    /// A schedule with the given base and cap.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The jitter window for retry `attempt` (0-based): `min(cap, SPREAD × base × 2^attempt)`.
    pub fn window(&self, attempt: u32) -> Duration {
        let growth = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(SPREAD).saturating_mul(growth).min(self.cap)
    }

    /// The delay before retry `attempt`, given `unit`, a uniform draw from `[0, 1)`.
    /// Values outside that range are clamped, so a bad draw cannot exceed the window.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
        self.window(attempt).mul_f64(unit)
    }
}

/// A uniform draw from `[0, 1)` from the operating system's generator (ring's
/// `SystemRandom`, already linked for TLS, rather than another RNG crate).
pub fn random_unit() -> f64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 8];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // The OS generator failing is exotic; a fixed mid-window delay is still a delay.
        return 0.5;
    }
    // 53 random bits, the precision of an f64 mantissa.
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// What a simulated master restart looks like from the master's side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Herd {
    /// The most successful connects in any one second.
    pub peak_per_second: usize,
    /// Median seconds from the drop to the successful reconnect.
    pub median: f64,
    /// 99th percentile of the same.
    pub p99: f64,
}

impl Backoff {
    /// Simulates `agents` agents dropped at the same instant by a master that accepts
    /// connections again `down` seconds later (attempts before that fail at once), with a
    /// seeded generator so the figures repeat. A planning tool for choosing base and cap.
    pub fn simulate_restart(&self, agents: usize, down: f64, seed: u64) -> Herd {
        let mut rng = SplitMix(seed);
        let mut times = Vec::with_capacity(agents);
        for _ in 0..agents {
            let (mut t, mut k) = (0.0, 0u32);
            loop {
                t += self.delay(k, rng.unit()).as_secs_f64();
                if t >= down {
                    break;
                }
                k = k.saturating_add(1);
            }
            times.push(t);
        }
        if times.is_empty() {
            return Herd { peak_per_second: 0, median: 0.0, p99: 0.0 };
        }
        times.sort_by(f64::total_cmp);
        let mut per_second = std::collections::HashMap::<u64, usize>::new();
        for t in &times {
            *per_second.entry(*t as u64).or_default() += 1;
        }
        Herd {
            peak_per_second: per_second.into_values().max().unwrap_or(0),
            median: times[agents / 2],
            p99: times[agents * 99 / 100],
        }
    }
}

/// SplitMix64, a seeded generator so simulations repeat. Eight lines, for one simulation:
/// not worth a crate.
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn windows_grow_from_three_bases_and_stop_at_the_cap() {
        let b = Backoff::new(secs(5), secs(60));
        let windows: Vec<_> = (0..6).map(|k| b.window(k).as_secs()).collect();
        assert_eq!(windows, [15, 30, 60, 60, 60, 60]);
        assert_eq!(b.window(u32::MAX), secs(60));
    }

    #[test]
    fn delays_stay_inside_the_window_even_for_bad_draws() {
        let b = Backoff::new(secs(5), secs(60));
        assert_eq!(b.delay(0, 0.0), Duration::ZERO);
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(7500));
        assert_eq!(b.delay(0, 7.0), secs(15));
        assert_eq!(b.delay(0, -1.0), Duration::ZERO);
        assert_eq!(b.delay(0, f64::NAN), Duration::ZERO);
        assert_eq!(Backoff::new(Duration::ZERO, secs(60)).delay(3, 0.9), Duration::ZERO);
    }

    #[test]
    fn system_draws_are_units() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    #[test]
    fn a_master_restart_does_not_bring_the_herd_back_in_one_second() {
        // 10,000 agents dropped at t = 0; the master is back after `down` seconds.
        for down in [0.0, 5.0] {
            let herd = Backoff::new(secs(5), DEFAULT_CAP).simulate_restart(10_000, down, 7);
            // The fixed 5 s policy brings all 10,000 back in one second.
            assert!(herd.peak_per_second <= 1_000, "down {down}: peak {}", herd.peak_per_second);
            assert!(herd.median < 15.0, "down {down}: median {}", herd.median);
        }
    }
}
