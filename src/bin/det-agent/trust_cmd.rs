//! `det-agent trust`: list, forget, or trust a master on first use (the decision is
//! `det_agent::trust::decide`).

use std::process::ExitCode;
use std::time::Duration;

use det_agent::pem;
use det_agent::text::escape;
use det_agent::trust::{self, Consent, Decision, Inspection, MasterUrl, Store};
use det_agent::x509::{CertSummary, Fingerprint};

use crate::{env, proxy_env, CliError, Outcome};

pub(crate) struct TrustRequest {
    pub(crate) master: Option<String>,
    pub(crate) master_cert_name: Option<String>,
    pub(crate) fingerprint: Option<String>,
}

pub(crate) fn trust_list(store: &Store) -> Outcome {
    let entries = store.load().map_err(|e| CliError::Usage(e.to_string()))?;
    outln!("{} master(s) trusted on first use in {}", entries.len(), store.path().display());
    for (url, pem) in entries {
        let leaf = pem::parse_certs(pem.as_bytes(), store.path()).ok().and_then(|c| CertSummary::parse(&c[0]).ok());
        let url = escape(&url);
        match leaf {
            Some(leaf) => outln!("{url}\n  {leaf}"),
            None => outln!("{url}\n  (no readable certificate)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn trust_forget(store: &Store, text: &str) -> Outcome {
    let url = MasterUrl::parse(text).map_err(CliError::Usage)?;
    let forgotten = store.forget(&url).map_err(|e| CliError::Usage(e.to_string()))?;
    let what = if forgotten { "forgot" } else { "nothing was stored for" };
    outln!("{what} {} in {}", url.store_key(), store.path().display());
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn trust_master(store: &Store, request: TrustRequest, limit: Duration) -> Outcome {
    let Some(text) = request.master.or_else(|| env("DET_MASTER")) else {
        return Err(CliError::Usage(
            "say which master: -m URL (or DET_MASTER), or use --list or --forget URL".to_owned(),
        ));
    };
    let url = MasterUrl::parse(&text).map_err(CliError::Usage)?;
    let name = match request.master_cert_name.or_else(|| env("DET_MASTER_CERT_NAME")) {
        Some(name) => Some(
            rustls_pki_types::DnsName::try_from(name.clone())
                .map_err(|_| CliError::Usage(format!("--master-cert-name \"{}\" is not a DNS name", escape(&name))))?,
        ),
        None => None,
    };
    let expected = request.fingerprint.as_deref().map(trust::parse_fingerprint).transpose().map_err(CliError::Usage)?;
    let (chain, rejection) = match trust::inspect(&url, name, proxy_env()?, limit).await {
        Ok(Inspection::AlreadyTrusted { summary }) => {
            outln!("{url}: {summary}; a CA this host trusts already vouches for it, so nothing was stored");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Inspection::Untrusted { chain, rejection }) => (chain, rejection),
        Err(err) => return Err(CliError::Failed(err.to_string())),
    };
    let Some(leaf) = chain.first().and_then(|c| CertSummary::parse(c).ok()) else {
        return Err(CliError::Failed(format!("the master at {url} presented no readable certificate")));
    };
    outln!("The master at {url} presented a certificate chain this host does not trust:");
    outln!("  {}", rejection.to_string().lines().next().unwrap_or_default());
    for (i, cert) in chain.iter().enumerate() {
        if let Ok(summary) = CertSummary::parse(cert) {
            outln!("  [{i}] {summary}");
        }
    }
    outln!("  fingerprint (sha256 of the leaf): {}", leaf.sha256);
    outln!("  key pin (sha256 of its public key, for security.tls.master_key_pins): {}", leaf.key_pin);
    let consent = match expected {
        Some(expected) => Consent::Fingerprint(expected),
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            out!("Trust this certificate for {} from now on? [y/N] ", url.store_key());
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            Consent::Answer(answer)
        }
        None => Consent::NoWayToAsk,
    };
    match trust::decide(&leaf.sha256, &consent) {
        Decision::Trust => {}
        Decision::FingerprintMismatch => return Err(CliError::Failed(fingerprint_mismatch(&leaf.sha256))),
        Decision::Declined => {
            outln!("not trusted; nothing was stored");
            return Ok(ExitCode::FAILURE);
        }
        Decision::NoConsent => return Err(CliError::Failed(
            "refused: there is no terminal to ask, and no --fingerprint; compare the fingerprint above with the one the master's administrator gives you, then run again with --fingerprint sha256:...".to_owned(),
        )),
    }
    store.put(&url, &chain).map_err(|e| CliError::Usage(e.to_string()))?;
    outln!(
        "trusted: stored for {} in {}; check and run now accept exactly this certificate for that master",
        url.store_key(),
        store.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn fingerprint_mismatch(presented: &Fingerprint) -> String {
    format!(
        "refused: the presented leaf's fingerprint is {presented}, not the one given with --fingerprint; do not trust this master until its administrator confirms which is right"
    )
}
