//! A simulated master restart: a fleet of agents dropped at the same instant, a master
//! that is down for a while, then perhaps up but failing, then accepting again. A
//! planning tool for the reconnect schedule: it reports how hard the fleet hits the
//! master and how many agents come back inside the master's reconnect wait.
//!
//! Seeded, so every figure repeats exactly. Agents do not interact (the master's capacity
//! is not modelled), and a refused or failed attempt takes no time. Every agent started at
//! the same instant, an hour before the drop, so that nothing but the schedule spreads
//! them.

use std::time::Duration;

use super::{Backoff, Failure, Pacer, Phase, Schedule};

/// How long every simulated agent had been running when the master dropped it.
const UPTIME: Duration = Duration::from_secs(3600);

/// An agent still not back after this many attempts is counted as having given up (only a
/// zero base, which retries at once, comes near it).
const MAX_ATTEMPTS: u32 = 100_000;

/// What happens to the master, and how many agents it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Agents dropped at the same instant.
    pub agents: usize,
    /// How long after the drop the master accepts TCP connections again; attempts before
    /// that fail as [`Failure::Down`].
    pub down: Duration,
    /// How long after that the master is up but failing; attempts then fail as
    /// [`Failure::Failing`].
    pub failing: Duration,
    /// The master's `agent_reconnect_wait`, counted from when it accepts again: an agent
    /// back later has lost its work.
    pub window: Duration,
    /// Seeds the phases and the jitter draws.
    pub seed: u64,
}

impl Scenario {
    /// `agents` agents, a master down for `down` seconds then well, the default 25 s
    /// reconnect wait, and a fixed seed.
    pub fn restart(agents: usize, down: Duration) -> Scenario {
        Scenario { agents, down, failing: Duration::ZERO, window: Duration::from_secs(25), seed: 7 }
    }
}

/// A reconnect policy to simulate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// The Go agent: try at once, then every `backoff`, `attempts` tries in all, then exit
    /// (`agent/internal/agent.go`, `reconnectFlow`).
    Fixed {
        /// `agent_reconnect_backoff`.
        backoff: Duration,
        /// `agent_reconnect_attempts`.
        attempts: u32,
    },
    /// det-agent's previous schedule: uniform jitter redrawn for every retry, over a window
    /// that doubles with every retry.
    Jitter(Backoff),
    /// Uniform jitter redrawn for every retry over `[0, 2 × mean)`, without growth: the
    /// same mean interval as a phased period of `mean`, to show what redrawing alone does.
    Redrawn {
        /// The mean delay.
        mean: Duration,
    },
    /// det-agent's schedule: every agent on its own phase, drawn once.
    Phased(Schedule),
}

impl Policy {
    /// The Go agent with its defaults: 5 tries, 5 s apart.
    pub fn go_agent() -> Policy {
        Policy::Fixed { backoff: Duration::from_secs(5), attempts: 5 }
    }
}

/// What the master saw, in seconds from when it accepted connections again.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Agents simulated.
    pub agents: usize,
    /// The most successful connects in any one second.
    pub peak_per_second: usize,
    /// Median reconnect, of the agents that came back (`None` when none did).
    pub median: Option<f64>,
    /// 99th percentile of the same.
    pub p99: Option<f64>,
    /// The last agent back.
    pub max: Option<f64>,
    /// Share of all agents back inside the master's reconnect wait, from 0 to 1.
    pub inside_window: f64,
    /// Agents that stopped trying.
    pub gave_up: usize,
    /// Attempts while the master was up but failing.
    pub failing_attempts: usize,
    /// The most attempts in any one second while the master was failing.
    pub failing_peak_per_second: usize,
}

/// Runs `scenario` under `policy`.
pub fn simulate(policy: &Policy, scenario: &Scenario) -> Report {
    let mut rng = SplitMix(scenario.seed);
    let drop = UPTIME;
    let accept = drop + scenario.down;
    let master = Master { accept, well: accept + scenario.failing };
    let mut failing_per_second = vec![0usize; scenario.failing.as_secs_f64().ceil() as usize];
    let mut back = Vec::with_capacity(scenario.agents);
    for _ in 0..scenario.agents {
        let mut agent = Agent::new(policy, &mut rng);
        let mut at = drop + agent.after_drop(&mut rng);
        for attempt in 1..=MAX_ATTEMPTS {
            let failure = match master.answer(at) {
                None => {
                    back.push((at - accept).as_secs_f64());
                    break;
                }
                Some(failure) => failure,
            };
            if failure == Failure::Failing {
                if let Some(count) = failing_per_second.get_mut((at - accept).as_secs() as usize) {
                    *count += 1;
                }
            }
            match agent.after_failure(failure, attempt, &mut rng, at) {
                Some(delay) => at += delay,
                None => break,
            }
        }
    }
    report(scenario, back, &failing_per_second)
}

/// When the master accepts, and when it stops failing.
struct Master {
    accept: Duration,
    well: Duration,
}

impl Master {
    /// How an attempt at `at` fails, or `None` when it succeeds.
    fn answer(&self, at: Duration) -> Option<Failure> {
        if at < self.accept {
            Some(Failure::Down)
        } else if at < self.well {
            Some(Failure::Failing)
        } else {
            None
        }
    }
}

/// One simulated agent's state under a policy.
enum Agent {
    Fixed { backoff: Duration, attempts: u32 },
    Jitter { backoff: Backoff, retries: u32 },
    Redrawn { mean: Duration },
    Phased { schedule: Schedule, pacer: Pacer },
}

impl Agent {
    fn new(policy: &Policy, rng: &mut SplitMix) -> Agent {
        match *policy {
            Policy::Fixed { backoff, attempts } => Agent::Fixed { backoff, attempts },
            Policy::Jitter(backoff) => Agent::Jitter { backoff, retries: 0 },
            Policy::Redrawn { mean } => Agent::Redrawn { mean },
            Policy::Phased(schedule) => Agent::Phased { schedule, pacer: Pacer::new(Phase::new(rng.unit())) },
        }
    }

    /// The delay from the drop to the first attempt.
    fn after_drop(&mut self, rng: &mut SplitMix) -> Duration {
        match self {
            Agent::Fixed { .. } => Duration::ZERO,
            Agent::Jitter { backoff, retries } => {
                *retries = 1;
                backoff.delay(0, rng.unit())
            }
            Agent::Redrawn { mean } => mean.mul_f64(2.0 * rng.unit()),
            // The agent's clock starts at 0, UPTIME before the drop.
            Agent::Phased { schedule, pacer } => pacer.dropped(schedule, true, UPTIME),
        }
    }

    /// The delay after the `attempt`-th attempt failed at `at`, or `None` to give up.
    fn after_failure(&mut self, failure: Failure, attempt: u32, rng: &mut SplitMix, at: Duration) -> Option<Duration> {
        match self {
            Agent::Fixed { backoff, attempts } => (attempt < *attempts).then_some(*backoff),
            Agent::Jitter { backoff, retries } => {
                let delay = backoff.delay(*retries, rng.unit());
                *retries = retries.saturating_add(1);
                Some(delay)
            }
            Agent::Redrawn { mean } => Some(mean.mul_f64(2.0 * rng.unit())),
            Agent::Phased { schedule, pacer } => Some(pacer.failed(schedule, failure, at)),
        }
    }
}

fn report(scenario: &Scenario, mut back: Vec<f64>, failing_per_second: &[usize]) -> Report {
    let agents = scenario.agents;
    let gave_up = agents - back.len();
    let window = scenario.window.as_secs_f64();
    let inside = back.iter().filter(|&&s| s < window).count();
    let mut per_second = Vec::<usize>::new();
    for &s in &back {
        let second = s as usize;
        if second >= per_second.len() {
            per_second.resize(second + 1, 0);
        }
        per_second[second] += 1;
    }
    let max = back.iter().copied().max_by(f64::total_cmp);
    // Selection rather than a sort: the tests run this in a debug build, 61 times.
    let mut at = |share: usize| {
        let index = back.len() * share / 100;
        (index < back.len()).then(|| *back.select_nth_unstable_by(index, f64::total_cmp).1)
    };
    let (median, p99) = (at(50), at(99));
    Report {
        agents,
        peak_per_second: per_second.into_iter().max().unwrap_or(0),
        median,
        p99,
        max,
        inside_window: if agents == 0 { 1.0 } else { inside as f64 / agents as f64 },
        gave_up,
        failing_attempts: failing_per_second.iter().sum(),
        failing_peak_per_second: failing_per_second.iter().copied().max().unwrap_or(0),
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
