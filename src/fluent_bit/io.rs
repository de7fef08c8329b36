//! The parts of the Fluent Bit generator that touch the disk or the network: writing
//! the files, and fetching the master's certificate for `--probe`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CaFile, Evidence, FluentError, Format, Pipeline, CA_FILE_NAME};
use crate::check::Check;
use crate::config::{Config, Trust};
use crate::dial::ProxyEnv;
use crate::fsutil;
use crate::tls::TlsClient;

/// The files [`write`] left in the folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The configuration file.
    pub config: PathBuf,
    /// The copy of the master's certificate, in pinned mode.
    pub ca_file: Option<PathBuf>,
    /// Files of ours removed because they described other settings (the other
    /// format's configuration, a CA copy no longer used).
    pub removed: Vec<PathBuf>,
}

/// Builds the configuration for `config` with its CA copy in `dir`, and writes both.
/// Nothing is written unless everything checks out.
///
/// # Errors
/// As [`Pipeline::build`], or a file cannot be written.
pub fn write_for(
    config: &Config,
    dir: &Path,
    format: Format,
    presented: Option<Evidence>,
) -> Result<(Pipeline, Written), FluentError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let pipeline = Pipeline::build(config, CaFile::CopyIn(&dir), presented)?;
    let written = write(&pipeline, &dir, format)?;
    Ok((pipeline, written))
}

/// Writes `pipeline` to `dir` (created if missing): the CA copy first, then the
/// configuration that names it, each replaced atomically with mode 0644 (neither holds
/// a secret). Removes the files of ours that no longer apply, so Fluent Bit cannot be
/// started on a stale configuration with weaker trust.
///
/// # Errors
/// A file cannot be written; the old files are then left as they were.
pub fn write(pipeline: &Pipeline, dir: &Path, format: Format) -> Result<Written, FluentError> {
    let text = pipeline.render(format)?;
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source| FluentError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(fail(dir))?;
    let ca_path = dir.join(CA_FILE_NAME);
    let ca_file = match pipeline.ca_copy() {
        Some(certs) => {
            fsutil::write_atomic(&ca_path, crate::pem::encode_certs(certs).as_bytes(), 0o644)
                .map_err(fail(&ca_path))?;
            Some(ca_path.clone())
        }
        None => None,
    };
    let config = dir.join(format.file_name());
    fsutil::write_atomic(&config, text.as_bytes(), 0o644).map_err(fail(&config))?;

    let other = match format {
        Format::Classic => Format::Yaml,
        Format::Yaml => Format::Classic,
    };
    let mut stale = vec![dir.join(other.file_name())];
    if ca_file.is_none() {
        stale.push(ca_path);
    }
    let mut removed = Vec::new();
    for path in stale {
        if fsutil::remove_if_present(&path).map_err(fail(&path))? {
            removed.push(path);
        }
    }
    Ok(Written { config, ca_file, removed })
}

/// Fetches the master's certificate over TLS with the agent's own verifier (`client`,
/// or one built from `config`) and dialer (through `proxy` when it applies), for the
/// name check of CA mode.
///
/// # Errors
/// TLS is off or skip_verify is on (nothing to check), or the master could not be
/// reached or verified; the message carries `det-agent check`'s explanation.
pub async fn probe(
    config: &Config,
    proxy: ProxyEnv,
    client: Option<TlsClient>,
    limit: Duration,
) -> Result<Evidence, FluentError> {
    let why_not = match config.tls.as_ref().map(|t| &t.trust) {
        None => Some("TLS is off, so there is no certificate to check"),
        Some(Trust::SkipVerify) => {
            Some("skip_verify is on, so Fluent Bit verifies no name and there is nothing to check")
        }
        Some(_) => None,
    };
    if let Some(why) = why_not {
        return Err(FluentError::Probe { explanation: why.to_owned() });
    }
    // Through the daemon's own dialer (proxy included); the certificate is what counts.
    let mut check = Check::new(config).proxy(proxy).timeout(limit).ask_info(false);
    if let Some(client) = client {
        check = check.client(client);
    }
    let report = check.run().await;
    if !report.verdict.ok {
        let explanation = report.verdict.error.unwrap_or(report.verdict.summary);
        return Err(FluentError::Probe { explanation });
    }
    let cert = report
        .chain
        .into_iter()
        .next()
        .ok_or_else(|| FluentError::Probe { explanation: "the master presented no certificate".to_owned() })?;
    Ok(Evidence {
        source: format!("the certificate {} presented (verified as {})", report.target, config.server_name().to_str()),
        cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev_master::fixtures;

    #[test]
    fn pem_copy_reads_back_to_the_same_certificates() {
        let certs = fixtures::certs("master.pem");
        let text = crate::pem::encode_certs(&certs);
        assert_eq!(crate::pem::parse_certs(text.as_bytes(), Path::new("copy")).unwrap(), certs);
        assert!(text.lines().all(|l| l.len() <= 64));
    }
}
