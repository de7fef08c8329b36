//! Runs one verifier path N times, for counting instructions with callgrind, which gives
//! repeatable figures where wall-clock timings on a shared machine do not:
//!
//! ```sh
//! cargo build --release --example verify_cost
//! for n in 0 200; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/verify_cost verify ca $n 2>&1 | grep Collected; done
//! ```
//!
//! Instructions per operation = (count at 200 − count at 0) / 200. Kinds: `verify` (one
//! `verify_server_cert` on the fixture master's chain) and `handshake` (a full in-memory
//! handshake, client and server). Paths: `stock_webpki`, `ca`, `pinned_chain`,
//! `pinned_exact`, `skip_verify`.

use std::process::ExitCode;

use det_agent::dev_master::{fixtures, in_memory};
use rustls_pki_types::{ServerName, UnixTime};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: verify_cost verify|handshake stock_webpki|ca|pinned_chain|pinned_exact|skip_verify N";
    let [kind, path, n] = args.as_slice() else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let (Ok(n), Some((_, verifier))) = (n.parse::<u32>(), in_memory::verifiers().into_iter().find(|(l, _)| l == path))
    else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    match kind.as_str() {
        "verify" => {
            let chain = fixtures::certs("master.pem");
            let name = ServerName::try_from("localhost").unwrap();
            let now = UnixTime::now();
            for _ in 0..n {
                verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], now).unwrap();
            }
        }
        "handshake" => {
            let (client, server) = (in_memory::client(verifier), in_memory::server());
            for _ in 0..n {
                in_memory::handshake(&client, &server).unwrap();
            }
        }
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
