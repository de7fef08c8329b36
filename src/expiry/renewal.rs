//! Renewal-aware advice: a pinned leaf that a public CA issued breaks at the CA's next
//! renewal, every few months. Said once at start-up and by `det-agent check`, with the
//! two pins that survive a renewal: CA mode, or the key with certbot's `--reuse-key`.

use std::fmt;
use std::path::PathBuf;

use rustls_pki_types::{CertificateDer, UnixTime};

use crate::config::Trust;
use crate::text::Untrusted;
use crate::tls::{issued_under, Anchors, Role};
use crate::x509::CertSummary;

/// Where the pinned leaf is pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinnedIn {
    /// `security.tls.master_cert`.
    File(PathBuf),
    /// The trust-on-first-use store.
    TrustStore {
        /// The store file.
        path: PathBuf,
        /// The master's entry.
        url: String,
    },
}

/// A pinned master certificate that a public CA issued, and what to do instead.
/// `Display` writes the advice in one paragraph.
#[derive(Clone, Debug)]
pub struct RenewalAdvice {
    /// Where it is pinned.
    pub pinned_in: PinnedIn,
    /// The pinned leaf.
    pub leaf: CertSummary,
    /// The CA that issued it.
    pub issuer: Untrusted,
    /// The public root it chains to.
    pub root: Untrusted,
}

/// Advice for a pinned master certificate (`trust`: a `master_cert` file, or a
/// first-use store entry) when its leaf was issued by a public CA: when it chains, with
/// the intermediates in the file or those the master `presented` (pass `&[]` at
/// start-up), to one of `public_roots`, which is [`Anchors::bundled`] except in tests.
/// `None` for CA mode, skip_verify, a pinned CA, a self-signed or private-CA leaf.
///
/// The chain is checked at the leaf's own notBefore, so a pin that has already expired
/// still gets the advice. Names are not checked: this explains, it never trusts.
pub fn renewal_advice(
    trust: &Trust,
    presented: &[CertificateDer<'_>],
    public_roots: &Anchors,
) -> Option<RenewalAdvice> {
    let Trust::Pinned(pinned) = trust else { return None };
    let pinned_in = match &pinned.store_entry {
        Some(url) => PinnedIn::TrustStore { path: pinned.path.clone(), url: url.clone() },
        None => PinnedIn::File(pinned.path.clone()),
    };
    // A first-use entry authenticates its first certificate; a file, its non-CA ones.
    let candidates = match pinned.store_entry {
        Some(_) => &pinned.certs[..pinned.certs.len().min(1)],
        None => &pinned.certs[..],
    };
    for leaf in candidates {
        let Ok(summary) = CertSummary::parse(leaf) else { continue };
        if summary.is_ca == Some(true) {
            continue;
        }
        let intermediates: Vec<CertificateDer<'_>> = pinned
            .certs
            .iter()
            .chain(presented)
            .filter(|c| c.as_ref() != leaf.as_ref())
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(summary.not_before.0.max(0) as u64));
        let Some(path) = issued_under(public_roots, leaf, &intermediates, at) else { continue };
        let root = path.iter().find(|c| c.role == Role::Anchor).map(|c| c.subject.clone()).unwrap_or_default();
        return Some(RenewalAdvice { pinned_in, issuer: summary.issuer.clone(), leaf: summary, root });
    }
    None
}

impl fmt::Display for RenewalAdvice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let leaf = &self.leaf;
        match &self.pinned_in {
            PinnedIn::File(path) => {
                write!(f, "security.tls.master_cert ({}) pins the master's own certificate", path.display())?
            }
            PinnedIn::TrustStore { path, url } => write!(
                f,
                "the master certificate trusted on first use for {url} (stored in {}) is the master's own certificate",
                path.display()
            )?,
        }
        write!(
            f,
            ", {} (valid until {}), which a public CA issued: {}, under {}, one of the public roots det-agent trusts in CA mode. Public CAs renew certificates every few months (Let's Encrypt's live 90 days and are renewed 30 days before they end), and each renewal is a new certificate, so this pin breaks at the master's next renewal and the agent then refuses the master until the pin is replaced. ",
            leaf.subject, leaf.not_after, self.issuer, self.root
        )?;
        let name = leaf.dns_names.first().map(|n| format!(" (e.g. {n})")).unwrap_or_default();
        let undo = match &self.pinned_in {
            PinnedIn::File(_) => "remove security.tls.master_cert".to_owned(),
            PinnedIn::TrustStore { url, .. } => format!("run `det-agent trust --forget {url}`"),
        };
        write!(
            f,
            "Use CA mode instead: {undo}, keep security.tls.enabled true, and if agents dial an address the certificate does not name, set security.tls.master_cert_name to a name it carries{name}. Or pin the key, which a renewal can keep: CA mode with security.tls.master_key_pins [{}], and renew with certbot's --reuse-key so the key stays the same.",
            leaf.key_pin
        )
    }
}
