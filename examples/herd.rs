//! Simulates a master restart that drops 10,000 agents at once and prints the peak
//! connect rate and the reconnect times under det-agent's schedule and the Go agent's
//! fixed 5 s sleep. `cargo run --release --example herd [AGENTS]`

use std::time::Duration;

use det_agent::backoff::{Backoff, DEFAULT_CAP};

fn main() {
    let agents: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let schedule = Backoff::new(Duration::from_secs(5), DEFAULT_CAP);
    println!(
        "{agents} agents, base 5 s, cap {} s, first window {} s",
        DEFAULT_CAP.as_secs(),
        schedule.window(0).as_secs()
    );
    println!("master back after | peak connects/s | vs fixed 5 s | median s | p99 s");
    for down in [0.0, 2.0, 5.0, 8.0, 10.0, 15.0] {
        let herd = schedule.simulate_restart(agents, down, 7);
        // The fixed policy retries every 5 s in lockstep: everyone lands in one second.
        let fixed_median = (down / 5.0_f64).ceil().max(1.0) * 5.0;
        println!(
            "{down:>17} | {:>15} | {:>11.3}x | {:>8.1} | {:>5.1}   (fixed: {agents}/s, median {fixed_median} s)",
            herd.peak_per_second,
            herd.peak_per_second as f64 / agents as f64,
            herd.median,
            herd.p99
        );
    }
}
