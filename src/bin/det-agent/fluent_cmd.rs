//! `det-agent fluent-bit`: print or write the Fluent Bit configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use det_agent::fluent_bit::{self as fluent, Format};

use crate::{proxy_env, CliError, Outcome};

pub(crate) async fn fluent_bit(
    config: det_agent::Config,
    format: Option<Format>,
    out: Option<PathBuf>,
    probe: bool,
    limit: Duration,
) -> Outcome {
    let format = format.unwrap_or(config.fluent.format);
    let presented = if probe {
        let evidence = fluent::io::probe(&config, proxy_env()?, None, limit).await;
        Some(evidence.map_err(|e| CliError::Failed(e.to_string()))?)
    } else {
        None
    };
    let result = match &out {
        Some(dir) => fluent::io::write_for(&config, dir, format, presented).map(|(pipeline, written)| {
            for path in std::iter::once(&written.config).chain(&written.ca_file) {
                outln!("wrote {}", path.display());
            }
            for path in &written.removed {
                outln!("removed {} (it described other settings)", path.display());
            }
            pipeline
        }),
        None => fluent::Pipeline::build(&config, fluent::CaFile::Original, presented)
            .and_then(|pipeline| pipeline.render(format).map(|text| (pipeline, text)))
            .map(|(pipeline, text)| {
                out!("{text}");
                pipeline
            }),
    };
    match result {
        Ok(pipeline) => {
            for warning in pipeline.warnings() {
                eprintln!("det-agent: warning: {warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err @ (fluent::FluentError::Write { .. } | fluent::FluentError::SelfCheck { .. })) => {
            Err(CliError::Failed(err.to_string()))
        }
        Err(err) => Err(CliError::Usage(err.to_string())),
    }
}
