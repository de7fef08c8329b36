//! det-agent's integration tests: real TLS handshakes over loopback against the dev
//! master, and the `det-agent` binary run as an operator would. One binary, one module
//! per topic.

mod anchors;
mod cli;
mod dev_master;
mod diagnostics;
mod escaping;
mod fluent_bit;
mod fluent_bit_e2e;
mod fluent_bit_real;
mod go_config;
mod hostile_input;
mod interop;
mod key_pins;
mod layers;
mod letsencrypt;
mod lifecycle;
mod link;
mod matrix;
mod metrics;
mod negative;
mod no_debug;
mod protocol;
mod relied_on;
mod reload;
mod run_reports;
mod systemd;
mod trust;
mod trust_files;
mod util;
