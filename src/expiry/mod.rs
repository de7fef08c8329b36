//! Certificate expiry, before it bites: which of the certificates the agent relies on
//! (the master's leaf, the validated path's intermediates, the anchor, the agent's own
//! client certificate) end soon, how many days they have left, and what to do about it.
//!
//! Everything here is pure: the time is an argument, never read from a clock, so tests
//! inject it. [`status`] judges one certificate against two [`Windows`] (a warning 30
//! days ahead, an error 7 days ahead, by default); [`Watch`] is what the daemon keeps
//! between connections, reminding at most once a day per certificate;
//! [`renewal_advice`] recognises a pinned leaf that a public CA issued, whose pin breaks
//! at the CA's next renewal.

mod renewal;
mod watch;

use std::fmt;

use serde::Serialize;

use crate::config::ClientIdentity;
use crate::tls::{CertSource, ReliedOn, Role};
use crate::x509::Timestamp;

pub use renewal::{renewal_advice, PinnedIn, RenewalAdvice};
pub use watch::{reminder_due, Watch};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// How far ahead of a certificate's end to warn, and to call it an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Warn when a certificate ends within this many days (default 30).
    pub warn_days: u32,
    /// An error when it ends within this many days, or has ended (default 7).
    pub error_days: u32,
}

impl Windows {
    /// The default warning window, in days (`certificate_warning_days`).
    pub const DEFAULT_WARN_DAYS: u32 = crate::config::DEFAULT_CERT_WARNING_DAYS;
    /// The default error window, in days (`certificate_error_days`).
    pub const DEFAULT_ERROR_DAYS: u32 = crate::config::DEFAULT_CERT_ERROR_DAYS;
}

impl Default for Windows {
    fn default() -> Self {
        Windows { warn_days: Windows::DEFAULT_WARN_DAYS, error_days: Windows::DEFAULT_ERROR_DAYS }
    }
}

/// How urgent a certificate's end is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Outside both windows, or its end is not known or not enforced.
    Ok,
    /// Inside the warning window.
    Warning,
    /// Inside the error window, or already ended.
    Error,
}

/// One certificate judged at one time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The certificate.
    #[serde(flatten)]
    pub cert: ReliedOn,
    /// Whole days until its notAfter, rounded down: 0 when it ends within a day,
    /// negative once it has ended. `None` when its end is not known.
    pub days_left: Option<i64>,
    /// How urgent.
    pub level: Level,
    /// One line for the operator when `level` is not [`Level::Ok`]: the certificate, its
    /// role and source, its notAfter, the days left and the fix.
    pub message: Option<String>,
    /// Seconds until its notAfter (negative once it has passed).
    #[serde(skip)]
    seconds_left: Option<i64>,
}

/// The client certificate of `identity` (its first certificate), as a [`ReliedOn`] of
/// role [`Role::Client`] from `security.tls.client_cert`; `None` when it does not parse.
pub fn client_certificate(identity: &ClientIdentity) -> Option<ReliedOn> {
    let leaf = identity.chain.first()?;
    ReliedOn::from_der(Role::Client, leaf, CertSource::File(identity.cert_path.clone()))
}

/// `certs` judged at `now`, in order.
pub fn assess(certs: &[ReliedOn], now: Timestamp, windows: Windows) -> Vec<Status> {
    certs.iter().map(|cert| status(cert, now, windows)).collect()
}

/// One certificate judged at `now`: inside the error window when it ends within
/// `windows.error_days` days (or has ended), else inside the warning window when it ends
/// within `windows.warn_days` days. A certificate whose end is not known (a bundled
/// root) or whose dates are not checked (the leaf under key-pin mode) is never flagged.
pub fn status(cert: &ReliedOn, now: Timestamp, windows: Windows) -> Status {
    let Some(not_after) = cert.not_after else {
        return Status { cert: cert.clone(), days_left: None, level: Level::Ok, message: None, seconds_left: None };
    };
    let left = not_after.0.saturating_sub(now.0);
    let days_left = left.div_euclid(DAY);
    let level = if !cert.dates_checked {
        Level::Ok
    } else if left <= i64::from(windows.error_days) * DAY {
        Level::Error
    } else if left <= i64::from(windows.warn_days) * DAY {
        Level::Warning
    } else {
        Level::Ok
    };
    let mut status =
        Status { cert: cert.clone(), days_left: Some(days_left), level, message: None, seconds_left: Some(left) };
    if level != Level::Ok {
        status.message = Some(format!(
            "{} {} ({}) {}, on {}: {}",
            cert.role,
            cert.subject,
            cert.source,
            status.when(),
            not_after,
            fix(cert)
        ));
    }
    status
}

impl Status {
    /// `expires in 42 days`, `expires in less than a day`, `EXPIRED 3 days ago`, or why
    /// no end is known.
    fn when(&self) -> String {
        let Some(left) = self.seconds_left else { return "has no known expiry date".to_owned() };
        let plural = |n: i64| if n == 1 { "day" } else { "days" };
        match (left < 0, left.unsigned_abs() / DAY as u64) {
            (false, 0) => "expires in less than a day".to_owned(),
            (false, n) => format!("expires in {n} {}", plural(n as i64)),
            (true, 0) => "EXPIRED less than a day ago".to_owned(),
            (true, n) => format!("EXPIRED {n} {} ago", plural(n as i64)),
        }
    }

    /// What `det-agent check` prints for it: `expires in 42 days (2030-03-31T23:59:59Z)`,
    /// `EXPIRED 3 days ago (…)`, or why no end is tracked.
    pub fn expiry_text(&self) -> String {
        let Some(not_after) = self.cert.not_after else {
            return match self.cert.source {
                CertSource::Bundled => {
                    "no expiry date known (the bundled roots carry only a name and a key; Mozilla removes a root before it expires)".to_owned()
                }
                _ => "no expiry date known".to_owned(),
            };
        };
        let mut text = format!("{} ({not_after})", self.when());
        if !self.cert.dates_checked {
            text.push_str("; not enforced: the pinned key authenticates the master, whatever the certificate's dates");
        }
        text
    }
}

impl fmt::Display for Status {
    /// `master certificate CN=… (presented by the master): expires in 42 days (…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({}): {}", self.cert.role, self.cert.subject, self.cert.source, self.expiry_text())
    }
}

/// What to do about a certificate that ends soon, by what it is and where it came from.
fn fix(cert: &ReliedOn) -> String {
    match (cert.role, &cert.source) {
        (Role::Master, CertSource::Presented) => "renew the master's certificate and have the master serve the new one (where certbot or another ACME client renews it, check that renewal runs and that the master reloads the certificate)".to_owned(),
        (Role::Master, CertSource::File(path)) => format!("renew the master's certificate, then put the new one in {} (security.tls.master_cert) on every agent; pin its CA, or its key with security.tls.master_key_pins, to make renewals painless", path.display()),
        (Role::Master, CertSource::TrustStore { url, .. }) => format!("renew the master's certificate, then accept the new one on every agent with `det-agent trust {url}`"),
        (Role::Intermediate, CertSource::Presented) => "the master must serve its CA's current intermediate certificate: get the renewed one from the CA and put it after the master's certificate in the chain file the master serves".to_owned(),
        (Role::Anchor, CertSource::File(path)) => format!("replace the CA certificate in {} (security.tls.master_cert) with the CA's renewed certificate", path.display()),
        (Role::Anchor, CertSource::HostStore(what)) => format!("install the CA's renewed certificate in this host's trust store ({what})"),
        (Role::Anchor, CertSource::PresentedPinnedKey) => "the master must serve its CA's renewed certificate; if the renewed CA has a new key, add that key's pin to security.tls.master_key_pins".to_owned(),
        (Role::Client, CertSource::File(path)) => format!("renew the client certificate with the CA the master trusts for agents, and put it in {} (security.tls.client_cert) with its key", path.display()),
        _ => "replace it with its renewed certificate".to_owned(),
    }
}

#[cfg(test)]
mod tests;
