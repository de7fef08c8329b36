//! Options of Determined's agent that have no meaning for det-agent: accepted, so an
//! agent.yaml, a command line or an environment written for Determined's agent carries
//! over unchanged, and reported, each once, with why it is ignored.

use std::fmt;

use super::names::*;
use super::resolve::Resolver;
use super::ConfigArgs;
use crate::error::Origin;

/// An option that was set and is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredKey {
    /// The agent.yaml key.
    pub key: &'static str,
    /// Where it was set.
    pub origin: Origin,
    /// Why det-agent ignores it.
    pub reason: &'static str,
}

impl fmt::Display for IgnoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.key, self.origin, self.reason)
    }
}

/// The one warning for every ignored option, or `None` when none was set. Options
/// ignored for the same reason are named together.
pub fn warning(ignored: &[IgnoredKey]) -> Option<String> {
    let mut groups: Vec<(&str, Vec<&IgnoredKey>)> = Vec::new();
    for key in ignored {
        match groups.iter_mut().find(|(reason, _)| *reason == key.reason) {
            Some((_, keys)) => keys.push(key),
            None => groups.push((key.reason, vec![key])),
        }
    }
    let groups: Vec<String> = groups
        .into_iter()
        .map(|(reason, keys)| {
            let names: Vec<&str> = keys.iter().map(|k| k.key).collect();
            if keys.iter().all(|k| k.origin == keys[0].origin) {
                format!("{} ({}): {reason}", names.join(", "), keys[0].origin)
            } else {
                let named: Vec<String> = keys.iter().map(|k| format!("{} ({})", k.key, k.origin)).collect();
                format!("{}: {reason}", named.join(", "))
            }
        })
        .collect();
    (!groups.is_empty())
        .then(|| format!("options of Determined's agent that det-agent accepts and ignores: {}", groups.join("; ")))
}

const NO_API: &str = "det-agent serves no agent API (Determined's agent served only /debug/pprof there); metrics.listen serves metrics and a health check";
const NO_API_TLS: &str = "the TLS of Determined's agent API server, and det-agent serves no agent API";
const NO_CONTAINERS: &str = "det-agent starts no containers";
const NO_FLUENT_CONTAINER: &str =
    "det-agent writes Fluent Bit's configuration (fluent.config_dir) instead of running Fluent Bit in a container";
const IN_A_FILE: &str = "it names the file to read, so inside a file it has no effect (as in Determined's agent); use --config-file or $DET_CONFIG_FILE";

type FlagOf = fn(&ConfigArgs) -> &Option<String>;

/// Each ignored option, its flag's field (`None`: no flag or variable is ignored), and why.
const IGNORED: &[(&Opt, Option<FlagOf>, &str)] = &[
    (&CONFIG_FILE, None, IN_A_FILE),
    (&API_ENABLED, Some(|a| &a.api_enabled), NO_API),
    (&BIND_IP, Some(|a| &a.bind_ip), NO_API),
    (&BIND_PORT, Some(|a| &a.bind_port), NO_API),
    (&API_TLS, Some(|a| &a.tls), NO_API_TLS),
    (&API_TLS_CERT, Some(|a| &a.tls_cert), NO_API_TLS),
    (&API_TLS_KEY, Some(|a| &a.tls_key), NO_API_TLS),
    (&CONTAINER_RUNTIME, Some(|a| &a.container_runtime), NO_CONTAINERS),
    (&AUTO_REMOVE_DISABLED, None, NO_CONTAINERS),
    (&FLUENT_IMAGE, None, NO_FLUENT_CONTAINER),
    (&FLUENT_CONTAINER_NAME, None, NO_FLUENT_CONTAINER),
];

impl Resolver<'_> {
    /// Every ignored option that was set, where the highest-precedence source set it.
    /// Any value is accepted: none is used.
    pub(super) fn ignored(&self) -> Vec<IgnoredKey> {
        IGNORED
            .iter()
            .filter_map(|&(opt, flag, reason)| {
                let origin = match flag {
                    Some(flag) => match (flag(self.args), (self.env)(opt.env).filter(|v| !v.is_empty())) {
                        (Some(_), _) => Some(Origin::Flag(opt.flag)),
                        (None, Some(_)) => Some(Origin::Env(opt.env)),
                        (None, None) => None,
                    },
                    None => None,
                };
                let origin = origin.or_else(|| self.sources.file_under(opt.key).map(|p| Origin::File(p.to_owned())))?;
                Some(IgnoredKey { key: opt.key, origin, reason })
            })
            .collect()
    }
}
