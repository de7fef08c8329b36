//! Simulates a master restart that drops a fleet of agents at once and prints what the
//! master sees under det-agent's phased schedule, det-agent's previous per-retry jitter,
//! jitter redrawn every retry around the phased period, and the Go agent's fixed 5 s
//! retries. Seeded: the figures repeat exactly.
//!
//! `cargo run --release --example herd [AGENTS [BASE_SECONDS [WAIT_SECONDS]]]`
//! (defaults: 10,000 agents, `agent_reconnect_backoff` 5 s, the master's
//! `agent_reconnect_wait` 25 s; the cap is 60 s).

use std::time::Duration;

use det_agent::backoff::herd::{simulate, Policy, Report, Scenario};
use det_agent::backoff::{Backoff, Schedule, DEFAULT_CAP};

const DOWNTIMES: [u64; 9] = [0, 2, 5, 10, 15, 20, 30, 45, 60];

fn main() {
    let arg = |n: usize| std::env::args().nth(n).and_then(|a| a.parse::<f64>().ok()).filter(|v| *v >= 0.0);
    let agents = arg(1).map_or(10_000, |a| a as usize);
    let base = Duration::from_secs_f64(arg(2).unwrap_or(5.0)).min(DEFAULT_CAP);
    let window = Duration::from_secs_f64(arg(3).unwrap_or(25.0));
    let scenario = |down: u64, failing: u64| Scenario {
        failing: Duration::from_secs(failing),
        window,
        ..Scenario::restart(agents, Duration::from_secs(down))
    };

    let schedule = Schedule::new(base, DEFAULT_CAP);
    let period = schedule.period().as_secs_f64();
    let policies = [
        (
            "phased",
            format!("det-agent: attempts on the agent's phase points, period {period} s"),
            Policy::Phased(schedule),
        ),
        (
            "previous",
            format!("det-agent before: uniform in [0, min(60 s, {period} s × 2^k)), redrawn every retry"),
            Policy::Jitter(Backoff::new(base, DEFAULT_CAP)),
        ),
        (
            "redrawn",
            format!(
                "uniform in [0, {} s) redrawn every retry: the phased period's mean, without a phase",
                2.0 * period
            ),
            Policy::Redrawn { mean: schedule.period() },
        ),
        ("Go agent", "Go agent: at once, then every 5 s, 5 tries, then exit".to_owned(), Policy::go_agent()),
    ];
    let wait = window.as_secs_f64();
    println!("{agents} agents dropped at once by a master down for D s; its reconnect wait is {wait} s from when it");
    println!("accepts again, and times are seconds from that moment. The Go agent's fixed retries bring all {agents}");
    println!("back in the same second.\n");

    let runs: Vec<Vec<Report>> =
        policies.iter().map(|(_, _, p)| DOWNTIMES.iter().map(|&d| simulate(p, &scenario(d, 0))).collect()).collect();
    println!("| master down for | phased: peak connects/s | median | p99 | max | inside {wait} s | previous: peak connects/s | p99 | inside {wait} s | Go agent: gave up |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, down) in DOWNTIMES.iter().enumerate() {
        let (new, old, go) = (&runs[0][i], &runs[1][i], &runs[3][i]);
        println!(
            "| {down} s | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            new.peak_per_second,
            secs(new.median),
            secs(new.p99),
            secs(new.max),
            share(new.inside_window),
            old.peak_per_second,
            secs(old.p99),
            share(old.inside_window),
            go.gave_up
        );
    }

    // Every whole second of downtime from 0 to 60, for the phased schedule.
    let sweep: Vec<Report> = (0..=60).map(|d| simulate(&policies[0].2, &scenario(d, 0))).collect();
    let worst_inside = sweep.iter().map(|r| r.inside_window).fold(1.0, f64::min);
    let worst_peak = sweep.iter().map(|r| r.peak_per_second).max().unwrap_or(0);
    let worst_last = sweep.iter().filter_map(|r| r.max).fold(0.0, f64::max);
    println!(
        "\nphased, every downtime from 0 to 60 s (61 runs): inside {wait} s at least {}, peak at most {worst_peak}/s, last back at most {:.1} s after the master accepts",
        share(worst_inside),
        worst_last
    );

    println!("\nA master that accepts TCP again after D s but fails every attempt for the next F s:\n");
    println!("| policy | D | F | attempts while failing: peak/s | mean/s | per agent | then: peak connects/s | median | max | inside {wait} s | gave up |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (short, _, policy) in &policies {
        for (down, failing) in [(0, 10), (30, 10), (0, 60)] {
            let r = simulate(policy, &scenario(down, failing));
            println!(
                "| {short} | {down} s | {failing} s | {} | {:.0} | {:.2} | {} | {} | {} | {} | {} |",
                r.failing_peak_per_second,
                r.failing_attempts as f64 / failing as f64,
                r.failing_attempts as f64 / agents.max(1) as f64,
                r.peak_per_second,
                secs(r.median),
                secs(r.max),
                share(r.inside_window),
                r.gave_up
            );
        }
    }

    for ((_, name, _), reports) in policies.iter().zip(&runs) {
        println!("\n{name}:\n");
        println!("| master down for | peak connects/s | median | p99 | max | inside {wait} s | gave up |");
        println!("|---|---|---|---|---|---|---|");
        for (down, r) in DOWNTIMES.iter().zip(reports) {
            println!(
                "| {down} s | {} | {} | {} | {} | {} | {} |",
                r.peak_per_second,
                secs(r.median),
                secs(r.p99),
                secs(r.max),
                share(r.inside_window),
                r.gave_up
            );
        }
    }
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "—".to_owned(), |s| format!("{s:.1} s"))
}

fn share(s: f64) -> String {
    format!("{:.1} %", 100.0 * s)
}
