//! `det-agent demo`: real TLS handshakes against embedded dev masters, one per scenario,
//! through the same `check` an operator runs. Each scenario states the outcome it expects;
//! the demo fails if any differs.

use std::io::Write;
use std::time::Duration;

use rustls_pki_types::DnsName;

use crate::check::{self, Report};
use crate::config::{Config, Host, PinnedCerts, TlsConfig, Trust};
use crate::dev_master::{fixtures, DevMaster};
use crate::tls::RejectionKind;
use crate::x509::KeyPin;

struct Scenario {
    title: &'static str,
    master: &'static str,
    dial: &'static str,
    trust: fn() -> Trust,
    cert_name: Option<&'static str>,
    /// Fixtures whose leaf key is pinned in master_key_pins.
    key_pins: &'static [&'static str],
    expect: Result<(), RejectionKind>,
}

fn pinned(file: &'static str) -> Trust {
    Trust::Pinned(PinnedCerts { path: fixtures::path(file), certs: fixtures::certs(file), store_entry: None })
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        title: "CA mode, private PKI",
        master: "master",
        dial: "localhost",
        trust: || Trust::PublicRoots,
        cert_name: None,
        key_pins: &[],
        expect: Err(RejectionKind::UnknownIssuer),
    },
    Scenario {
        title: "pinned to the root CA",
        master: "master",
        dial: "localhost",
        trust: || pinned("root-ca.pem"),
        cert_name: None,
        key_pins: &[],
        expect: Ok(()),
    },
    Scenario {
        title: "pinned to the chain, dial by IP",
        master: "master",
        dial: "127.0.0.1",
        trust: || pinned("chain-to-root.pem"),
        cert_name: None,
        key_pins: &[],
        expect: Ok(()),
    },
    Scenario {
        title: "pinned self-signed (openssl req -x509)",
        master: "self-signed-ca",
        dial: "localhost",
        trust: || pinned("self-signed-ca.pem"),
        cert_name: None,
        key_pins: &[],
        expect: Ok(()),
    },
    Scenario {
        title: "dial by IP, cert has DNS names only",
        master: "dns-only",
        dial: "127.0.0.1",
        trust: || pinned("root-ca.pem"),
        cert_name: None,
        key_pins: &[],
        expect: Err(RejectionKind::NotValidForName),
    },
    Scenario {
        title: "same, with master_cert_name",
        master: "dns-only",
        dial: "127.0.0.1",
        trust: || pinned("root-ca.pem"),
        cert_name: Some("master.det.test"),
        key_pins: &[],
        expect: Ok(()),
    },
    Scenario {
        title: "pinned, master cert expired",
        master: "expired",
        dial: "localhost",
        trust: || pinned("root-ca.pem"),
        cert_name: None,
        key_pins: &[],
        expect: Err(RejectionKind::Expired),
    },
    Scenario {
        title: "pinned CA expired, its leaf still valid",
        master: "issued-by-expired-self-signed",
        dial: "localhost",
        trust: || pinned("expired-self-signed-ca.pem"),
        cert_name: None,
        key_pins: &[],
        expect: Err(RejectionKind::Expired),
    },
    Scenario {
        title: "another master, same subject, new key",
        master: "self-signed-ca-other-key",
        dial: "localhost",
        trust: || pinned("self-signed-ca.pem"),
        cert_name: None,
        key_pins: &[],
        expect: Err(RejectionKind::UnknownIssuer),
    },
    Scenario {
        title: "skip_verify",
        master: "self-signed-leaf",
        dial: "127.0.0.1",
        trust: || Trust::SkipVerify,
        cert_name: None,
        key_pins: &[],
        expect: Ok(()),
    },
    Scenario {
        title: "CA key pinned, on the verified path",
        master: "master",
        dial: "localhost",
        trust: || pinned("root-ca.pem"),
        cert_name: None,
        key_pins: &["intermediate-ca.pem"],
        expect: Ok(()),
    },
    Scenario {
        title: "skip_verify + the master's key pinned",
        master: "self-signed-leaf",
        dial: "127.0.0.1",
        trust: || Trust::SkipVerify,
        cert_name: None,
        key_pins: &["self-signed-leaf.pem"],
        expect: Ok(()),
    },
    Scenario {
        title: "same pin, another master's key",
        master: "self-signed-ca",
        dial: "127.0.0.1",
        trust: || Trust::SkipVerify,
        cert_name: None,
        key_pins: &["self-signed-leaf.pem"],
        expect: Err(RejectionKind::KeyPinMismatch),
    },
];

/// Runs every scenario, printing a table and then the explanation of each refusal.
/// Returns whether every scenario ended as expected.
///
/// # Errors
/// Writing to `out` failed, or a dev master could not bind a loopback port.
pub async fn run(out: &mut dyn Write) -> std::io::Result<bool> {
    writeln!(out, "det-agent demo: real TLS handshakes against embedded test masters on 127.0.0.1\n")?;
    let mut rows = Vec::new();
    let mut all_as_expected = true;
    for s in SCENARIOS {
        let master = DevMaster::with_fixture(s.master).await?;
        let mut tls = TlsConfig::new((s.trust)());
        tls.master_cert_name = s.cert_name.map(|n| DnsName::try_from(n).expect("demo names are valid").to_owned());
        tls.master_key_pins =
            s.key_pins.iter().map(|f| KeyPin::of_cert(&fixtures::certs(f)[0]).expect("fixtures parse")).collect();
        let mut config = Config::new(Host::parse(s.dial).expect("demo hosts are valid"), Some(tls));
        config.master_port = master.addr().port();
        let report = check::check(&config, Duration::from_secs(5)).await;
        let got = if report.verdict.ok { Ok(()) } else { Err(report.verdict.rejection) };
        let as_expected = match (&s.expect, &got) {
            (Ok(()), Ok(())) => true,
            (Err(want), Err(Some(kind))) => want == kind,
            _ => false,
        };
        all_as_expected &= as_expected;
        rows.push((s, report, as_expected));
        master.stop().await;
    }

    let header = ["scenario", "mode", "dialed", "verified name", "result"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|(s, r, ok)| {
            let result = match (&r.verdict.ok, &r.verdict.rejection) {
                (true, _) if r.mode == "skip-verify" => "accepted, NOT verified".to_owned(),
                (true, _) if r.mode == "key-pin" => "authenticated by key pin".to_owned(),
                (true, _) => "verified".to_owned(),
                (false, Some(kind)) => format!(
                    "rejected: {}",
                    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
                ),
                (false, None) => "failed".to_owned(),
            };
            let result = if *ok { result } else { format!("{result}  << UNEXPECTED") };
            [
                s.title.to_owned(),
                r.mode.to_owned(),
                dialed(r),
                r.verified_name.clone().unwrap_or_else(|| "(not checked)".to_owned()),
                result,
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| cells.iter().map(|c| c[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line =
        |cols: &[String]| cols.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join(" | ");
    writeln!(out, "{}", line(&header.map(str::to_owned)).trim_end())?;
    writeln!(out, "{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"))?;
    for row in &cells {
        writeln!(out, "{}", line(row).trim_end())?;
    }

    writeln!(out, "\nWhy each refusal happened, as `det-agent check` explains it:")?;
    for (s, r, _) in rows.iter().filter(|(_, r, _)| !r.verdict.ok) {
        writeln!(
            out,
            "\n* {}\n  {}",
            s.title,
            r.verdict.error.as_deref().unwrap_or(&r.verdict.summary).replace('\n', "\n  ")
        )?;
    }
    writeln!(
        out,
        "\n{}",
        if all_as_expected { "every scenario ended as expected" } else { "SOME SCENARIOS DID NOT END AS EXPECTED" }
    )?;
    Ok(all_as_expected)
}

/// The address that answered (or the first tried).
fn dialed(r: &Report) -> String {
    r.attempts
        .iter()
        .find(|a| matches!(a.outcome, crate::dial::Outcome::Connected))
        .or(r.attempts.last())
        .map(|a| a.address.to_string())
        .unwrap_or_else(|| r.target.clone())
}
