//! What the daemon keeps between connections: the certificates it relies on and when it
//! last reminded the operator of each, so a certificate nearing its end is logged once a
//! day, not on every reconnect, and at once when it moves from warning to error.

use std::collections::HashMap;

use super::{assess, client_certificate, Level, Status, Windows, DAY};
use crate::config::ClientIdentity;
use crate::tls::ReliedOn;
use crate::x509::{Fingerprint, Timestamp};

/// Whether a reminder last given at `last` (never: `None`) is due again at `now`: at
/// most one a day per certificate.
pub fn reminder_due(last: Option<Timestamp>, now: Timestamp) -> bool {
    last.is_none_or(|last| now.0.saturating_sub(last.0) >= DAY)
}

/// The certificates the daemon relies on, and the reminders given about them.
///
/// Call [`relied_on`](Self::relied_on) after each handshake with
/// [`TlsInfo::relied_on`](crate::dial::TlsInfo::relied_on), and [`due`](Self::due) after
/// each handshake and then periodically (hourly is plenty) while connected: a connection
/// lasts for weeks, and a certificate's last month passes during one. Log each status it
/// returns with its [`message`](Status::message), as a warning or an error by its
/// [`level`](Status::level).
#[derive(Clone, Debug)]
pub struct Watch {
    windows: Windows,
    client: Option<ReliedOn>,
    relied_on: Vec<ReliedOn>,
    reminded: HashMap<Fingerprint, (Timestamp, Level)>,
}

impl Watch {
    /// A watch with these windows, and the client certificate when one is configured.
    pub fn new(windows: Windows, client: Option<&ClientIdentity>) -> Watch {
        Watch { windows, client: client.and_then(client_certificate), relied_on: Vec::new(), reminded: HashMap::new() }
    }

    /// What the latest handshake relied on (it replaces what an earlier one did).
    pub fn relied_on(&mut self, certs: &[ReliedOn]) {
        self.relied_on = certs.to_vec();
    }

    /// Every watched certificate judged at `now`: those relied on, then the client
    /// certificate.
    pub fn statuses(&self, now: Timestamp) -> Vec<Status> {
        let certs: Vec<ReliedOn> = self.relied_on.iter().chain(&self.client).cloned().collect();
        assess(&certs, now, self.windows)
    }

    /// The certificates to remind the operator of at `now`: those inside a window that
    /// were never reminded of, last reminded a day or more ago, or that have moved from
    /// the warning to the error window since. Each returned is counted as reminded.
    pub fn due(&mut self, now: Timestamp) -> Vec<Status> {
        let mut due = Vec::new();
        for status in self.statuses(now) {
            let Some(key) = status.cert.sha256 else { continue };
            if status.level == Level::Ok {
                continue;
            }
            let last = self.reminded.get(&key);
            let escalated = last.is_some_and(|(_, level)| status.level > *level);
            if escalated || reminder_due(last.map(|(at, _)| *at), now) {
                self.reminded.insert(key, (now, status.level));
                due.push(status);
            }
        }
        due
    }

    /// The earliest notAfter among the watched certificates whose dates are checked,
    /// for a metric that lets monitoring alert; `None` when none has a known end.
    pub fn earliest_not_after(&self) -> Option<Timestamp> {
        self.relied_on.iter().chain(&self.client).filter(|c| c.dates_checked).filter_map(|c| c.not_after).min()
    }
}
