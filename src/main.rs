//! The `det-agent` command line: parse flags, set up logging, call the library, map the
//! result to an exit code. Errors are printed once, here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use det_agent::{check, demo, ConfigArgs};

/// Connects this node to a Determined master over TLS, trusting the master exactly as configured.
#[derive(Parser, Debug)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Log level: error, warn, info, debug or trace (RUST_LOG also works)
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Dial the master once and explain how it was (or was not) verified.
    ///
    /// Exit status: 0 verified (or accepted under skip_verify), 1 not, 2 bad configuration.
    Check {
        #[command(flatten)]
        config: Box<ConfigArgs>,
        /// Print the report as one JSON object
        #[arg(long)]
        json: bool,
        /// Seconds each connect and each handshake may take
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Run real handshakes against embedded test masters in every trust mode and show the results.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("det-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Check { config, json, timeout } => {
            let config = match config.load(&|k| std::env::var(k).ok()) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("det-agent: configuration error: {err}");
                    return ExitCode::from(2);
                }
            };
            let report = check::check(&config, std::time::Duration::from_secs(timeout)).await;
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(err) => eprintln!("det-agent: cannot encode the report: {err}"),
                }
            } else {
                println!("{report}");
            }
            if report.verdict.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Demo => match demo::run(&mut std::io::stdout()).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(err) => {
                eprintln!("det-agent: demo failed: {err}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}
