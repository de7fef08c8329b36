//! The trust mode as a metric label.

use std::fmt;

use crate::config::{Config, Trust};

/// How the agent trusts the master: the `mode` label. The same words as
/// `det-agent check` and the logs (`Config::mode_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrustMode {
    /// Public CAs and the host's trust store.
    Ca,
    /// `master_cert` (or the trust-on-first-use store).
    Pinned,
    /// `skip_verify` without key pins: encrypted, master not authenticated.
    SkipVerify,
    /// `skip_verify` with `master_key_pins`: the pinned key authenticates the master.
    KeyPin,
    /// TLS off.
    Plain,
}

impl TrustMode {
    /// Every mode, in label order.
    pub const ALL: [TrustMode; 5] =
        [TrustMode::Ca, TrustMode::Pinned, TrustMode::SkipVerify, TrustMode::KeyPin, TrustMode::Plain];

    /// The mode `config` dials in.
    pub fn of(config: &Config) -> TrustMode {
        let Some(tls) = &config.tls else { return TrustMode::Plain };
        match (&tls.trust, tls.master_key_pins.is_empty()) {
            (Trust::PublicRoots, _) => TrustMode::Ca,
            (Trust::Pinned(_), _) => TrustMode::Pinned,
            (Trust::SkipVerify, true) => TrustMode::SkipVerify,
            (Trust::SkipVerify, false) => TrustMode::KeyPin,
        }
    }

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            TrustMode::Ca => "ca",
            TrustMode::Pinned => "pinned",
            TrustMode::SkipVerify => "skip-verify",
            TrustMode::KeyPin => "key-pin",
            TrustMode::Plain => "plain",
        }
    }
}

impl fmt::Display for TrustMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PinnedCerts, TlsConfig};
    use crate::x509::KeyPin;
    use crate::Host;

    #[test]
    fn labels_are_the_configs_mode_names() {
        let host = Host::parse("master.example.com").unwrap();
        let mut key_pin = TlsConfig::new(Trust::SkipVerify);
        key_pin.master_key_pins = vec![format!("sha256:{}", "ab".repeat(32)).parse::<KeyPin>().unwrap()];
        let configs = [
            Config::new(host.clone(), None),
            Config::new(host.clone(), Some(TlsConfig::new(Trust::PublicRoots))),
            Config::new(
                host.clone(),
                Some(TlsConfig::new(Trust::Pinned(PinnedCerts {
                    path: "master.pem".into(),
                    certs: vec![vec![0x30].into()],
                    store_entry: None,
                }))),
            ),
            Config::new(host.clone(), Some(TlsConfig::new(Trust::SkipVerify))),
            Config::new(host, Some(key_pin)),
        ];
        for config in &configs {
            assert_eq!(TrustMode::of(config).as_str(), config.mode_name());
        }
    }
}
