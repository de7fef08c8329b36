//! When to try the master again: the reconnect delay schedule.
//!
//! Pure: no clock, no sleep, no I/O, and nothing else from this crate. The caller passes
//! the time elapsed on its own clock, so the schedule is tested and simulated
//! ([`herd`], `examples/herd.rs`) without a runtime.
//!
//! # What it must do
//!
//! A Determined master forgets a dropped agent `agent_reconnect_wait` (25 s by default)
//! after the drop, or after its own start when it restarted, and kills that agent's
//! containers; a late agent registers afresh and its work is lost
//! (`master/internal/rm/agentrm/agent.go`, `socketDisconnected`, and `aproto/net.go`).
//! A master restart drops every agent at the same instant, and they must all be back
//! inside that wait without arriving in the same second.
//!
//! # The schedule
//!
//! Every agent draws a [`Phase`] once, at start, and keeps it. With the period
//! `P = min(3 × base, cap)` (`base` is `agent_reconnect_backoff`, `cap` is
//! `agent_reconnect_backoff_max`), the agent's *phase points* are the instants
//! `(j + phase) × P` on its own clock, `j` = 0, 1, 2, …. Every attempt after a drop or
//! failure starts on one of them, so a fleet's attempts are spread evenly over any
//! period, however many times they fail:
//!
//! - after a link drops, and after [`Failure::Down`]: the next phase point, within `P`;
//! - after the n-th consecutive [`Failure::Failing`]: the last phase point within
//!   `min(cap, P × 2^(n-1))`, so 15 s, 30 s, then 60 s with the defaults;
//! - after [`Failure::Refused`]: the last phase point within `cap`.
//!
//! The delay before an attempt that aims at a wait `w` is thus in `(w − P, w]`: it never
//! exceeds the cap, and it is never zero unless `P` is (base 0: retry at once).
//!
//! Why a phase rather than jitter drawn anew for every attempt: a fixed phase puts a
//! tenth of a fleet in each tenth of a period, whatever happened before, while a delay
//! redrawn at every attempt is a sum of draws, which bunches towards its middle and grows
//! a tail as failures accumulate. The [`herd`] simulation shows both.
//!
//! Why 3 × base: after a master accepts again, its agents arrive evenly over one period,
//! so about `N / P` per second, with a median of `P / 2` and the last at `P`. With
//! 10,000 agents and the default base of 5 s, 2 × base = 10 s peaks at 1,049/s, above a
//! tenth of the Go agent's 10,000 in one second (a mean of exactly 1,000/s, plus chance);
//! 4 × base = 20 s puts the median at 10.1 s for a master down 9 s. 3 × base = 15 s peaks
//! at 723/s with a median of 7.4–7.7 s for every downtime from 0 to 60 s
//! (`cargo run --release --example herd`), every agent back within 15 s, which leaves
//! 10 s (one connect timeout) inside the master's 25 s. An operator who sets another base
//! gets a period of 3 × that base: agents back within 3 × base, a median of 1.5 × base,
//! about `N / (3 × base)` connects per second.

pub mod herd;

use std::time::Duration;

/// The phased period, in bases: `P = PERIOD_BASES × base` (never more than the cap).
pub const PERIOD_BASES: u32 = 3;

/// The default cap on one delay (`agent_reconnect_backoff_max`).
pub const DEFAULT_CAP: Duration = Duration::from_secs(60);

/// How an attempt to reach the master failed, as far as the schedule cares: what a retry
/// costs the master, and whether retrying soon can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing reached a master process, so a retry costs the master nothing and comes
    /// again at the next phase point: the master's name did not resolve, no address
    /// accepted a TCP connection (refused, unreachable, or the TCP connect timed out), or
    /// an HTTP proxy said it cannot reach it (5xx) or did not answer (the daemon's
    /// `classify` lists every case).
    Down,
    /// A master process accepted the connection and then failed: it is up but unwell
    /// (starting, overloaded, upgrading), so retries back off exponentially. A TLS
    /// handshake that broke other than by a certificate refusal, a websocket upgrade
    /// answered with an HTTP error (5xx, or any status not listed under `Refused`), a
    /// stage that timed out after TCP connected, a master that spoke something other than
    /// the agent protocol; and a registered link that ended before it was healthy (see
    /// [`Pacer::dropped`]).
    Failing,
    /// A certificate was refused: waiting for an operator's fix, so retried at the cap.
    /// The verifier refused the master's certificate (`LinkError::rejection()` is some),
    /// the master did not prove it holds its certificate's key (`KeyNotProven`), or the
    /// master refused this agent's certificate: a TLS alert `bad_certificate`,
    /// `unsupported_certificate`, `certificate_revoked`, `certificate_expired`,
    /// `certificate_unknown`, `unknown_ca`, `access_denied` or `certificate_required`, or
    /// HTTP 401 or 403 on `/agents`; and what else only an operator can fix: a resource
    /// pool the master does not have, a proxy that refuses the tunnel (407, 403).
    Refused,
}

/// Where an agent's attempts fall within each period: a fraction in `[0, 1)`, drawn once
/// per process and kept, so that a fleet's attempts spread evenly over the period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phase(f64);

impl Phase {
    /// A phase from the operating system's generator ([`random_unit`]).
    pub fn random() -> Phase {
        Phase::new(random_unit())
    }

    /// The phase `unit` of a period. A phase is circular: values outside `[0, 1)` wrap
    /// (1.25 is 0.25, −0.25 is 0.75), and a non-finite value is 0.
    pub fn new(unit: f64) -> Phase {
        if !unit.is_finite() {
            return Phase(0.0);
        }
        let wrapped = unit.rem_euclid(1.0);
        // rem_euclid can round up to exactly 1.0 for tiny negative values.
        Phase(if wrapped < 1.0 { wrapped } else { 0.0 })
    }

    /// The fraction of a period, in `[0, 1)`.
    pub fn unit(self) -> f64 {
        self.0
    }
}

/// The reconnect schedule from the configured base and cap. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    cap: Duration,
    period: Duration,
}

impl Schedule {
    /// The schedule for `agent_reconnect_backoff` = `base` and
    /// `agent_reconnect_backoff_max` = `cap`. The period is `PERIOD_BASES × base`, or the
    /// cap when that is shorter.
    pub fn new(base: Duration, cap: Duration) -> Schedule {
        Schedule { cap, period: base.saturating_mul(PERIOD_BASES).min(cap) }
    }

    /// The period `P` between an agent's phase points.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// No delay exceeds this.
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The wait aimed at after `failure`; `failing_streak` counts consecutive
    /// [`Failure::Failing`] attempts including this one (0 is taken as 1).
    pub fn wait(&self, failure: Failure, failing_streak: u32) -> Duration {
        match failure {
            Failure::Down => self.period,
            Failure::Failing => {
                let doublings = failing_streak.saturating_sub(1).min(31);
                self.period.saturating_mul(1 << doublings).min(self.cap)
            }
            Failure::Refused => self.cap,
        }
    }

    /// The delay before the next attempt, after `failure` at `elapsed` on the agent's own
    /// clock (time since any fixed origin the agent keeps, such as its start).
    /// `failing_streak` counts consecutive [`Failure::Failing`] attempts including this
    /// one; it is ignored for the other kinds.
    ///
    /// The delay ends on the agent's last phase point within [`Schedule::wait`]: it is in
    /// `(wait − P, wait]`, never above the cap, and the same for the same arguments.
    pub fn delay(&self, failure: Failure, failing_streak: u32, phase: Phase, elapsed: Duration) -> Duration {
        self.until_phase_point(self.wait(failure, failing_streak), phase, elapsed)
    }

    /// The delay from `elapsed` to the first phase point after `elapsed + wait − P`.
    fn until_phase_point(&self, wait: Duration, phase: Phase, elapsed: Duration) -> Duration {
        let period = self.period.as_nanos();
        if period == 0 {
            return wait;
        }
        // Nanoseconds in u128: exact, and no overflow for any Duration.
        let offset = (phase.unit() * period as f64) as u128 % period;
        let after = elapsed.as_nanos() + (wait.as_nanos() - period.min(wait.as_nanos()));
        let point = if after < offset { offset } else { offset + ((after - offset) / period + 1) * period };
        let delay = point - elapsed.as_nanos();
        // `point` ≤ `after` + P ≤ `elapsed` + `wait` ≤ `elapsed` + cap, so this fits.
        Duration::new((delay / 1_000_000_000) as u64, (delay % 1_000_000_000) as u32)
    }
}

/// One agent's reconnect state: its phase and its failing streak. The daemon keeps one
/// for the life of the process (across reloads) and asks it for every delay, so the rules
/// for the streak live here, tested, rather than in the daemon's loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    phase: Phase,
    failing: u32,
}

impl Pacer {
    /// A pacer with this phase (draw it with [`Phase::random`] once, at start).
    pub fn new(phase: Phase) -> Pacer {
        Pacer { phase, failing: 0 }
    }

    /// The agent's phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Consecutive [`Failure::Failing`] attempts (and unhealthy drops) so far.
    pub fn failing_streak(&self) -> u32 {
        self.failing
    }

    /// An attempt failed with `failure` at `elapsed`: the delay before the next one.
    ///
    /// A `Failing` attempt lengthens the streak; `Down` and `Refused` end it, since the
    /// master is then not up and failing, and when it comes back its agents should return
    /// within one period.
    pub fn failed(&mut self, schedule: &Schedule, failure: Failure, elapsed: Duration) -> Duration {
        self.failing = match failure {
            Failure::Failing => self.failing.saturating_add(1),
            Failure::Down | Failure::Refused => 0,
        };
        schedule.delay(failure, self.failing, self.phase, elapsed)
    }

    /// A registered link ended at `elapsed`: the delay before reconnecting. `healthy`
    /// says whether it stayed up long enough to count as healthy (the daemon's
    /// `healthy_after`, 60 s). A healthy link ends the streak and is followed at the next
    /// phase point, as for `Down`; one that dropped sooner is a `Failing` attempt, so a
    /// master that keeps accepting and dropping agents is backed off.
    pub fn dropped(&mut self, schedule: &Schedule, healthy: bool, elapsed: Duration) -> Duration {
        if healthy {
            self.failing = 0;
            return schedule.delay(Failure::Down, 0, self.phase, elapsed);
        }
        self.failed(schedule, Failure::Failing, elapsed)
    }
}

/// The schedule det-agent used before [`Schedule`]: the delay before retry `k` drawn anew
/// every time, uniformly from `[0, min(cap, 3 × base × 2^k))`. Its 99th percentile
/// reconnect after a master restart is 30–60 s, past the master's 25 s wait; it is kept
/// for the comparison in [`herd`] (the daemon asks a [`Pacer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// `agent_reconnect_backoff`: the scale of the first retry's window.
    pub base: Duration,
    /// No delay exceeds this.
    pub cap: Duration,
}

impl Backoff {
    /// Multiplier from the base to the first retry's window.
    const SPREAD: u32 = 3;

    /// A schedule with the given base and cap.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap }
    }

    /// The jitter window for retry `attempt` (0-based): `min(cap, 3 × base × 2^attempt)`.
    pub fn window(&self, attempt: u32) -> Duration {
        let growth = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(Self::SPREAD).saturating_mul(growth).min(self.cap)
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

#[cfg(test)]
mod tests {
    use super::herd::{simulate, Policy, Scenario};
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The defaults: base 5 s, cap 60 s, so a period of 15 s.
    fn defaults() -> Schedule {
        Schedule::new(secs(5), DEFAULT_CAP)
    }

    /// Where on its period an agent lands after `delay` from `elapsed`, in nanoseconds.
    fn landing(schedule: &Schedule, elapsed: Duration, delay: Duration) -> u128 {
        (elapsed + delay).as_nanos() % schedule.period().as_nanos()
    }

    #[test]
    fn every_agent_is_back_inside_the_masters_wait_whatever_the_downtime() {
        let phased = Policy::Phased(defaults());
        for down in 0..=60 {
            let r = simulate(&phased, &Scenario::restart(10_000, secs(down)));
            assert_eq!(r.inside_window, 1.0, "down {down} s: {r:?}");
            assert_eq!(r.gave_up, 0, "down {down} s: {r:?}");
            // A tenth of the Go agent's 10,000 in one second.
            assert!(r.peak_per_second <= 1_000, "down {down} s: {r:?}");
            assert!(r.median.is_some_and(|m| m < 10.0), "down {down} s: {r:?}");
            assert!(r.max.is_some_and(|m| m <= 15.0), "down {down} s: {r:?}");
        }
    }

    #[test]
    fn jitter_redrawn_every_retry_misses_the_masters_wait() {
        // det-agent's previous schedule: growing windows, redrawn every retry.
        let previous = Policy::Jitter(Backoff::new(secs(5), DEFAULT_CAP));
        for down in [2, 5, 10, 20, 30, 45, 60] {
            let r = simulate(&previous, &Scenario::restart(10_000, secs(down)));
            assert!(r.inside_window < 0.98, "down {down} s: {r:?}");
            assert!(r.p99.is_some_and(|p| p > 25.0), "down {down} s: {r:?}");
        }
        // Without growth, redrawing around the phased period's mean still leaves a tail.
        let redrawn = Policy::Redrawn { mean: defaults().period() };
        for down in [0, 10, 30] {
            let r = simulate(&redrawn, &Scenario::restart(10_000, secs(down)));
            assert!(r.inside_window < 0.99, "down {down} s: {r:?}");
        }
    }

    #[test]
    fn a_failing_master_is_tried_at_most_once_per_agent_in_its_first_ten_seconds() {
        let phased = Policy::Phased(defaults());
        let go = Policy::go_agent();
        for down in [0, 7, 30] {
            let scenario = Scenario { failing: secs(10), ..Scenario::restart(10_000, secs(down)) };
            let r = simulate(&phased, &scenario);
            assert!(r.failing_attempts <= 10_000, "down {down} s: {r:?}");
            assert!(r.failing_peak_per_second <= 1_000, "down {down} s: {r:?}");
            assert_eq!(r.inside_window, 1.0, "down {down} s: {r:?}");
            // The Go agent sends all 10,000 in the same second (or has given up, after 20 s).
            let g = simulate(&go, &scenario);
            let expected = if down <= 20 { 10_000 } else { 0 };
            assert_eq!(g.failing_peak_per_second, expected, "down {down} s: {g:?}");
        }
    }

    #[test]
    fn failing_attempts_back_off_exponentially_to_the_cap() {
        let s = defaults();
        let waits: Vec<_> = (1..=6).map(|n| s.wait(Failure::Failing, n).as_secs()).collect();
        assert_eq!(waits, [15, 30, 60, 60, 60, 60]);
        assert_eq!(s.wait(Failure::Failing, 0), secs(15));
        assert_eq!(s.wait(Failure::Failing, u32::MAX), DEFAULT_CAP);
        // An attempt that started on its phase point and failed at once waits the whole wait.
        let phase = Phase::new(0.4);
        let on_point = secs(3600) + secs(6); // 0.4 × 15 s past a multiple of 15 s
        let delays: Vec<_> = (1..=4).map(|n| s.delay(Failure::Failing, n, phase, on_point).as_secs()).collect();
        assert_eq!(delays, [15, 30, 60, 60]);
        // One that took 2.5 s keeps to its phase points: the wait less those 2.5 s.
        let late = on_point + Duration::from_millis(2500);
        let delays: Vec<_> = (1..=4).map(|n| s.delay(Failure::Failing, n, phase, late).as_millis()).collect();
        assert_eq!(delays, [12_500, 27_500, 57_500, 57_500]);
    }

    #[test]
    fn refusals_wait_the_cap_and_downs_the_next_phase_point() {
        let s = defaults();
        let phase = Phase::new(0.4);
        let on_point = secs(606); // 40 periods and 0.4 of one
        assert_eq!(s.delay(Failure::Refused, 0, phase, on_point), DEFAULT_CAP);
        assert_eq!(s.delay(Failure::Refused, 9, phase, on_point + secs(1)), secs(59));
        assert_eq!(s.delay(Failure::Down, 0, phase, on_point), secs(15));
        assert_eq!(s.delay(Failure::Down, 0, phase, on_point + secs(14)), secs(1));
        assert_eq!(s.delay(Failure::Down, 0, phase, Duration::ZERO), secs(6));
        // The streak only matters when failing.
        assert_eq!(s.delay(Failure::Down, 7, phase, on_point), secs(15));
    }

    #[test]
    fn delays_never_exceed_the_cap_and_land_on_the_phase() {
        let schedules = [
            defaults(),
            Schedule::new(secs(5), secs(50)), // cap not a multiple of the period
            Schedule::new(secs(5), secs(10)), // cap below 3 × base: period = cap
            Schedule::new(Duration::from_millis(10), Duration::from_millis(50)), // the link tests'
            Schedule::new(secs(3600), secs(3600)),
        ];
        let kinds = [Failure::Down, Failure::Failing, Failure::Refused];
        for s in schedules {
            assert!(s.period() <= s.cap() && !s.period().is_zero());
            for p in 0..50 {
                let phase = Phase::new(p as f64 / 50.0 + 0.003);
                for e in [0, 1, 999_999_999, 6_000_000_000, 3_600_123_456_789, u64::MAX / 4] {
                    let elapsed = Duration::from_nanos(e);
                    for kind in kinds {
                        for streak in [0, 1, 2, 3, 7, 40, u32::MAX] {
                            let d = s.delay(kind, streak, phase, elapsed);
                            let wait = s.wait(kind, streak);
                            assert!(d <= s.cap() && d <= wait && d + s.period() > wait, "{s:?} {kind:?} {d:?}");
                            let offset = (phase.unit() * s.period().as_nanos() as f64) as u128;
                            assert_eq!(landing(&s, elapsed, d), offset, "{s:?} {kind:?} {elapsed:?}");
                            assert_eq!(d, s.delay(kind, streak, phase, elapsed), "deterministic");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_zero_period_retries_at_once_except_after_a_refusal() {
        let s = Schedule::new(Duration::ZERO, secs(60));
        assert_eq!(s.period(), Duration::ZERO);
        assert_eq!(s.delay(Failure::Down, 0, Phase::new(0.5), secs(9)), Duration::ZERO);
        assert_eq!(s.delay(Failure::Failing, 5, Phase::new(0.5), secs(9)), Duration::ZERO);
        assert_eq!(s.delay(Failure::Refused, 0, Phase::new(0.5), secs(9)), secs(60));
    }

    #[test]
    fn phases_are_fractions_of_a_period_and_wrap() {
        assert_eq!(Phase::new(0.25).unit(), 0.25);
        assert_eq!(Phase::new(1.25).unit(), 0.25);
        assert_eq!(Phase::new(-0.25).unit(), 0.75);
        assert_eq!(Phase::new(1.0).unit(), 0.0);
        assert_eq!(Phase::new(-1e-20).unit(), 0.0);
        assert_eq!(Phase::new(f64::NAN).unit(), 0.0);
        assert_eq!(Phase::new(f64::INFINITY).unit(), 0.0);
        for _ in 0..100 {
            assert!((0.0..1.0).contains(&Phase::random().unit()));
        }
        // Two agents with different phases land at different points of the same period.
        let s = defaults();
        let a = secs(100) + s.delay(Failure::Down, 0, Phase::new(0.1), secs(100));
        let b = secs(100) + s.delay(Failure::Down, 0, Phase::new(0.6), secs(100));
        assert_eq!((a.as_millis(), b.as_millis()), (106_500, 114_000));
    }

    #[test]
    fn the_pacer_counts_failing_attempts_and_unhealthy_drops_until_something_else_happens() {
        let s = defaults();
        let mut pacer = Pacer::new(Phase::new(0.0));
        let at = secs(150); // on a phase point
        assert_eq!(pacer.failed(&s, Failure::Failing, at), secs(15));
        assert_eq!(pacer.failed(&s, Failure::Failing, at), secs(30));
        assert_eq!(pacer.dropped(&s, false, at), secs(60));
        assert_eq!(pacer.failing_streak(), 3);
        // The master went down: back to one period, and the next failure starts over.
        assert_eq!(pacer.failed(&s, Failure::Down, at), secs(15));
        assert_eq!(pacer.failing_streak(), 0);
        assert_eq!(pacer.failed(&s, Failure::Failing, at), secs(15));
        assert_eq!(pacer.failed(&s, Failure::Refused, at), secs(60));
        assert_eq!(pacer.failing_streak(), 0);
        pacer.failed(&s, Failure::Failing, at);
        pacer.failed(&s, Failure::Failing, at);
        assert_eq!(pacer.dropped(&s, true, at), secs(15));
        assert_eq!(pacer.failing_streak(), 0);
        assert_eq!(pacer.phase(), Phase::new(0.0));
    }

    #[test]
    fn previous_windows_grow_from_three_bases_and_stop_at_the_cap() {
        let b = Backoff::new(secs(5), secs(60));
        let windows: Vec<_> = (0..6).map(|k| b.window(k).as_secs()).collect();
        assert_eq!(windows, [15, 30, 60, 60, 60, 60]);
        assert_eq!(b.window(u32::MAX), secs(60));
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(7500));
        assert_eq!(b.delay(0, 7.0), secs(15));
        assert_eq!(b.delay(0, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn system_draws_are_units() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
