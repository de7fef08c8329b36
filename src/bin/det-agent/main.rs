//! The `det-agent` command line: parse flags, set up logging, call the library, and map
//! the result to an exit code in one place ([`CliError::exit_code`]). Errors are printed
//! once, here; policy (what to trust, when to reconnect) lives in the library. One file
//! per command that needs more than a few lines.

#[macro_use]
mod output;
mod daemon_cmd;
mod dev_master_cmd;
mod devices_cmd;
mod fluent_cmd;
mod logging;
mod trust_cmd;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use det_agent::daemon;
use det_agent::dev_master::{self, Behaviour};
use det_agent::dial::ProxyEnv;
use det_agent::fluent_bit::Format;
use det_agent::trust::Store;
use det_agent::{check, demo, ConfigArgs, ConfigError};

/// Connects this node to a Determined master over TLS, trusting the master exactly as configured.
#[derive(Parser, Debug)]
#[command(version, about, propagate_version = true)]
struct Cli {
    /// Log level (log.level)
    #[arg(short = 'l', long, global = true, value_name = "LEVEL", help = format!(
        "Log level: error, warn, info, debug or trace (logrus' panic, fatal and warning too); beats log.level and \
         debug; RUST_LOG, a filter, beats it [env: DET_LOG_LEVEL] [default: {}]",
        det_agent::config::DEFAULT_LOG_LEVEL
    ))]
    log_level: Option<String>,
    /// Log colors (log.color)
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true",
        help = format!(
            "Color the log on a terminal: --log-color=false turns it off [env: DET_LOG_COLOR] [default: {}]",
            det_agent::config::DEFAULT_LOG_COLOR
        ))]
    log_color: Option<String>,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum EnvFormat {
    /// `export NAME='value'` lines
    Shell,
    /// One JSON object
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Keep this agent connected to the master: verify, register, reconnect.
    ///
    /// SIGTERM/SIGINT close the websocket and exit 0. SIGHUP re-reads the configuration and
    /// certificate files; the new settings apply from the next connection (at once when
    /// they change the agent's ID, resource pool or devices). The master's container
    /// requests are answered at once: this agent runs no containers. Exit status: 0
    /// stopped by a signal, 1 gave up (agent_reconnect_attempts), 2 bad configuration.
    Run {
        #[command(flatten)]
        config: Box<ConfigArgs>,
        /// After a successful SIGHUP reload, reconnect at once instead of at the next reconnect
        #[arg(long)]
        reconnect_on_reload: bool,
    },
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
    /// Write a Fluent Bit configuration that ships task logs to the master, trusting it as this agent does.
    ///
    /// Prints the configuration, or with --out writes DIR/fluent-bit.conf (or .yaml) and, in
    /// pinned mode, a copy of master_cert as DIR/master-ca.pem. Fluent Bit verifies the master
    /// by a DNS name only (tls.vhost), never an IP. Exit status: 0 written, 1 the probe or a
    /// write failed, 2 the configuration cannot be expressed for Fluent Bit.
    FluentBit {
        #[command(flatten)]
        config: Box<ConfigArgs>,
        /// Configuration format [default: fluent.format from the configuration, else classic]
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Write the files into this folder instead of printing the configuration
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Fetch the master's certificate, verified as the agent would, and check that it
        /// carries the name Fluent Bit will verify
        #[arg(long)]
        probe: bool,
        /// Seconds the probe's connect and handshake may each take
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Trust a master's certificate on first use, in the store shared with the `det` CLI.
    ///
    /// Connects to the master. If this host's CAs already verify it, stores nothing.
    /// Otherwise shows the presented chain and asks (or checks --fingerprint) before
    /// storing it in $XDG_CONFIG_HOME/determined/certs.json. From then on `check` and `run`
    /// pin that chain for that master (an explicit master_cert wins), and a changed
    /// certificate is refused with a warning. Exit status: 0 trusted or already verified,
    /// 1 not trusted, 2 bad usage or an unreadable store.
    Trust {
        /// The master: https://HOST[:PORT], http://HOST[:PORT] or HOST[:PORT], as `det -m`
        #[arg(short = 'm', long, value_name = "URL")]
        master: Option<String>,
        /// The DNS name to verify instead of the URL's host
        #[arg(long, value_name = "NAME")]
        master_cert_name: Option<String>,
        /// Trust only a leaf with this SHA-256 fingerprint (handed out of band), without asking
        #[arg(long, value_name = "sha256:HEX")]
        fingerprint: Option<String>,
        /// List the stored masters
        #[arg(long)]
        list: bool,
        /// Forget what is stored for this master URL
        #[arg(long, value_name = "URL")]
        forget: Option<String>,
        /// Seconds the connect and the handshake may each take
        #[arg(long, default_value_t = 10, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Print the environment a task on this node needs to reach the master.
    ///
    /// DET_MASTER, DET_MASTER_HOST, DET_MASTER_PORT, DET_MASTER_ADDR, DET_USE_TLS, and when
    /// they apply DET_MASTER_CERT_FILE (noverify under skip_verify) and DET_MASTER_CERT_NAME;
    /// DET_AGENT_ID; DET_CLUSTER_ID and DET_MASTER_ID once `run` has recorded them in
    /// state_file (a note on stderr says when they are missing); HTTP_PROXY, HTTPS_PROXY,
    /// FTP_PROXY and NO_PROXY from http_proxy, https_proxy, ftp_proxy and no_proxy.
    TaskEnv {
        #[command(flatten)]
        config: Box<ConfigArgs>,
        /// Output format
        #[arg(long, value_enum, default_value_t = EnvFormat::Shell)]
        format: EnvFormat,
        /// The master's certificate as the task will see it [default: master_cert]
        #[arg(long, value_name = "PATH")]
        cert_file: Option<PathBuf>,
    },
    /// Run real handshakes against embedded test masters in every trust mode and show the results.
    Demo,
    /// Run a TEST DOUBLE of the master (for trying the agent and Fluent Bit; not a master).
    ///
    /// Like the master, it serves TLS on 8443 when given a certificate and key, plain HTTP on
    /// 8080 otherwise. It serves the agent websocket on /agents and accepts POST /task-logs,
    /// printing one JSON line per event on stdout.
    DevMaster {
        /// Certificate chain to serve (PEM)
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// Private key of --cert (PEM)
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        /// Serve the embedded test certificate (master.det.test, localhost, 127.0.0.1, ::1;
        /// its root is fixtures/pki/root-ca.pem)
        #[arg(long, conflicts_with = "cert")]
        test_cert: bool,
        /// Require agents to present a client certificate issued by these CAs (PEM), as the
        /// master's require_authentication and client_ca: a certificate presented is verified
        /// in the TLS handshake, an agent without one is answered 403 on /agents
        #[arg(long, value_name = "FILE")]
        client_ca: Option<PathBuf>,
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
        bind: IpAddr,
        /// Port [default: 8443 with TLS, 8080 without]
        #[arg(long, value_name = "N")]
        port: Option<u16>,
        /// Ping agents this often, in seconds
        #[arg(long, default_value_t = 15, value_name = "SECONDS")]
        ping_interval: u64,
        /// Hold a dropped agent this long before forgetting it (the master's agent_reconnect_wait)
        #[arg(long, default_value_t = 25.0, value_name = "SECONDS")]
        agent_reconnect_wait: f64,
        /// A resource pool the master has (repeat for several)
        #[arg(long = "resource-pool", default_value = "default", value_name = "NAME")]
        resource_pools: Vec<String>,
        /// Keep started agents in FILE across restarts, as the master keeps them in its database
        #[arg(long, value_name = "FILE")]
        state_file: Option<PathBuf>,
    },
}

/// Why a command failed, and so its exit status: 2 for what the operator must fix before
/// anything is dialed (configuration, usage, an unreadable store), 1 for everything else.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The configuration is invalid.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    /// A configuration or environment problem found after loading.
    #[error("configuration error: {0}")]
    Load(#[from] daemon::LoadError),
    /// The command was used wrongly, or its inputs cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed; the message says why.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) | CliError::Load(_) | CliError::Usage(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::FAILURE,
        }
    }
}

type Outcome = Result<ExitCode, CliError>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = logging::Logging { level: cli.log_level, color: cli.log_color, format: cli.log_format };
    // One thread: the daemon holds one connection, and a small idle footprint matters
    // more than parallelism on a GPU node.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("det-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, logging));
    // Do not wait for blocking tasks still running (a reload abandoned at shutdown, waiting
    // on a slow nvidia-smi): dropping the runtime would.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("det-agent: {err}");
            err.exit_code()
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn proxy_env() -> Result<ProxyEnv, CliError> {
    ProxyEnv::from_env(&env).map_err(|e| CliError::Load(e.into()))
}

async fn run(command: Command, logging: logging::Logging) -> Outcome {
    match command {
        Command::Run { config, reconnect_on_reload } => {
            let (args, config) = logging.load(*config)?;
            if let Some(warning) = config.ignored_warning() {
                tracing::warn!("{warning}");
            }
            daemon_cmd::run_daemon(args, reconnect_on_reload).await
        }
        Command::Check { config, json, timeout } => {
            let (_, config) = logging.load(*config)?;
            devices_cmd::warn_config(&config);
            let report =
                check::Check::new(&config).proxy(proxy_env()?).timeout(Duration::from_secs(timeout)).run().await;
            let devices = devices_cmd::detect_devices(&config).await;
            if json {
                let mut value = serde_json::to_value(&report)
                    .map_err(|e| CliError::Failed(format!("cannot encode the report: {e}")))?;
                if let serde_json::Value::Object(fields) = &mut value {
                    fields.insert("devices".to_owned(), devices.to_json(&config));
                }
                let text = det_agent::text::to_json_pretty(&value)
                    .map_err(|e| CliError::Failed(format!("cannot encode the report: {e}")))?;
                outln!("{text}");
            } else {
                outln!("{report}");
                out!("{}", devices.to_text(&config));
            }
            Ok(if report.verdict.ok && devices.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::FluentBit { config, format, out, probe, timeout } => {
            let (_, config) = logging.load(*config)?;
            devices_cmd::warn_config(&config);
            fluent_cmd::fluent_bit(config, format, out, probe, Duration::from_secs(timeout)).await
        }
        Command::Trust { master, master_cert_name, fingerprint, list, forget, timeout } => {
            logging.init_without_config()?;
            let store = Store::locate(&env).map_err(|e| CliError::Usage(e.to_string()))?;
            if list {
                return trust_cmd::trust_list(&store);
            }
            if let Some(url) = forget {
                return trust_cmd::trust_forget(&store, &url);
            }
            let request = trust_cmd::TrustRequest { master, master_cert_name, fingerprint };
            trust_cmd::trust_master(&store, request, Duration::from_secs(timeout)).await
        }
        Command::TaskEnv { config, format, cert_file } => {
            let (_, config) = logging.load(*config)?;
            devices_cmd::warn_ignored(&config);
            let master = det_agent::task_env::master_record(&config);
            if let Some(why) = master.why_missing() {
                eprintln!("det-agent: note: {why}");
            }
            let vars = det_agent::task_env::task_env(&config, cert_file.as_deref(), master.record())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            match format {
                EnvFormat::Shell => out!("{}", det_agent::task_env::to_shell(&vars)),
                EnvFormat::Json => outln!("{}", det_agent::task_env::to_json(&vars)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            logging.init_without_config()?;
            match demo::run(&mut std::io::stdout()).await {
                Ok(true) => Ok(ExitCode::SUCCESS),
                Ok(false) => Ok(ExitCode::FAILURE),
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => output::failed(&err),
                Err(err) => Err(CliError::Failed(format!("demo failed: {err}"))),
            }
        }
        Command::DevMaster {
            cert,
            key,
            test_cert,
            client_ca,
            bind,
            port,
            ping_interval,
            agent_reconnect_wait,
            resource_pools,
            state_file,
        } => {
            logging.init_without_config()?;
            let behaviour =
                Behaviour { ping_interval: Some(Duration::from_secs(ping_interval.max(1))), ..Behaviour::default() };
            let wait = Duration::try_from_secs_f64(agent_reconnect_wait).map_err(|_| {
                CliError::Usage(format!(
                    "dev-master: --agent-reconnect-wait {agent_reconnect_wait} is not a number of seconds"
                ))
            })?;
            let options = dev_master::Options {
                pools: resource_pools,
                agent_reconnect_wait: wait,
                state_file,
                require_authentication: client_ca.is_some(),
            };
            dev_master_cmd::serve_dev_master(cert.zip(key), test_cert, client_ca, bind, port, behaviour, options)
                .await
                .map_err(|e| CliError::Usage(format!("dev-master: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
