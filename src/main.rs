//! The `det-agent` command line: parse flags, set up logging, call the library, and map
//! the result to an exit code in one place ([`CliError::exit_code`]). Errors are printed
//! once, here; policy (what to trust, when to reconnect) lives in the library.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use det_agent::config::LogConfig;
use det_agent::daemon::{self, Channels, Control};
use det_agent::dev_master::{self, Behaviour, DevMaster};
use det_agent::devices;
use det_agent::dial::ProxyEnv;
use det_agent::fluent_bit::{self as fluent, Format};
use det_agent::text::escape;
use det_agent::trust::{self, Consent, Decision, Inspection, MasterUrl, Store};
use det_agent::x509::{CertSummary, Fingerprint};
use det_agent::{check, demo, pem, ConfigArgs, ConfigError};
use tokio::sync::mpsc;

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
    let logging = Logging { level: cli.log_level, color: cli.log_color, format: cli.log_format };
    // One thread: the daemon holds one connection, and a small idle footprint matters
    // more than parallelism on a GPU node.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("det-agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, logging)) {
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

async fn run(command: Command, logging: Logging) -> Outcome {
    match command {
        Command::Run { config, reconnect_on_reload } => {
            let (args, config) = logging.load(*config)?;
            if let Some(warning) = config.ignored_warning() {
                tracing::warn!("{warning}");
            }
            run_daemon(args, reconnect_on_reload).await
        }
        Command::Check { config, json, timeout } => {
            let (_, config) = logging.load(*config)?;
            warn_ignored(&config);
            let report =
                check::Check::new(&config).proxy(proxy_env()?).timeout(Duration::from_secs(timeout)).run().await;
            let devices = detect_devices(&config).await;
            if json {
                let mut value = serde_json::to_value(&report)
                    .map_err(|e| CliError::Failed(format!("cannot encode the report: {e}")))?;
                if let serde_json::Value::Object(fields) = &mut value {
                    fields.insert("devices".to_owned(), devices.to_json(&config));
                }
                let text = det_agent::text::to_json_pretty(&value)
                    .map_err(|e| CliError::Failed(format!("cannot encode the report: {e}")))?;
                println!("{text}");
            } else {
                println!("{report}");
                print!("{}", devices.to_text(&config));
            }
            Ok(if report.verdict.ok && devices.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::FluentBit { config, format, out, probe, timeout } => {
            let (_, config) = logging.load(*config)?;
            warn_ignored(&config);
            fluent_bit(config, format, out, probe, Duration::from_secs(timeout)).await
        }
        Command::Trust { master, master_cert_name, fingerprint, list, forget, timeout } => {
            logging.init_without_config()?;
            let store = Store::locate(&env).map_err(|e| CliError::Usage(e.to_string()))?;
            if list {
                return trust_list(&store);
            }
            if let Some(url) = forget {
                return trust_forget(&store, &url);
            }
            let request = TrustRequest { master, master_cert_name, fingerprint };
            trust_master(&store, request, Duration::from_secs(timeout)).await
        }
        Command::TaskEnv { config, format, cert_file } => {
            let (_, config) = logging.load(*config)?;
            warn_ignored(&config);
            let master = det_agent::task_env::master_record(&config);
            if let Some(why) = master.why_missing() {
                eprintln!("det-agent: note: {why}");
            }
            let vars = det_agent::task_env::task_env(&config, cert_file.as_deref(), master.record())
                .map_err(|e| CliError::Usage(e.to_string()))?;
            match format {
                EnvFormat::Shell => print!("{}", det_agent::task_env::to_shell(&vars)),
                EnvFormat::Json => println!("{}", det_agent::task_env::to_json(&vars)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => {
            logging.init_without_config()?;
            match demo::run(&mut std::io::stdout()).await {
                Ok(true) => Ok(ExitCode::SUCCESS),
                Ok(false) => Ok(ExitCode::FAILURE),
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
            serve_dev_master(cert.zip(key), test_cert, client_ca, bind, port, behaviour, options)
                .await
                .map_err(|e| CliError::Usage(format!("dev-master: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

struct TrustRequest {
    master: Option<String>,
    master_cert_name: Option<String>,
    fingerprint: Option<String>,
}

fn trust_list(store: &Store) -> Outcome {
    let entries = store.load().map_err(|e| CliError::Usage(e.to_string()))?;
    println!("{} master(s) trusted on first use in {}", entries.len(), store.path().display());
    for (url, pem) in entries {
        let leaf = pem::parse_certs(pem.as_bytes(), store.path()).ok().and_then(|c| CertSummary::parse(&c[0]).ok());
        let url = escape(&url);
        match leaf {
            Some(leaf) => println!("{url}\n  {leaf}"),
            None => println!("{url}\n  (no readable certificate)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn trust_forget(store: &Store, text: &str) -> Outcome {
    let url = MasterUrl::parse(text).map_err(CliError::Usage)?;
    let forgotten = store.forget(&url).map_err(|e| CliError::Usage(e.to_string()))?;
    let what = if forgotten { "forgot" } else { "nothing was stored for" };
    println!("{what} {} in {}", url.store_key(), store.path().display());
    Ok(ExitCode::SUCCESS)
}

async fn trust_master(store: &Store, request: TrustRequest, limit: Duration) -> Outcome {
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
            println!("{url}: {summary}; a CA this host trusts already vouches for it, so nothing was stored");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Inspection::Untrusted { chain, rejection }) => (chain, rejection),
        Err(err) => return Err(CliError::Failed(err.to_string())),
    };
    let Some(leaf) = chain.first().and_then(|c| CertSummary::parse(c).ok()) else {
        return Err(CliError::Failed(format!("the master at {url} presented no readable certificate")));
    };
    println!("The master at {url} presented a certificate chain this host does not trust:");
    println!("  {}", rejection.to_string().lines().next().unwrap_or_default());
    for (i, cert) in chain.iter().enumerate() {
        if let Ok(summary) = CertSummary::parse(cert) {
            println!("  [{i}] {summary}");
        }
    }
    println!("  fingerprint (sha256 of the leaf): {}", leaf.sha256);
    println!("  key pin (sha256 of its public key, for security.tls.master_key_pins): {}", leaf.key_pin);
    let consent = match expected {
        Some(expected) => Consent::Fingerprint(expected),
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            print!("Trust this certificate for {} from now on? [y/N] ", url.store_key());
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
            println!("not trusted; nothing was stored");
            return Ok(ExitCode::FAILURE);
        }
        Decision::NoConsent => return Err(CliError::Failed(
            "refused: there is no terminal to ask, and no --fingerprint; compare the fingerprint above with the one the master's administrator gives you, then run again with --fingerprint sha256:...".to_owned(),
        )),
    }
    store.put(&url, &chain).map_err(|e| CliError::Usage(e.to_string()))?;
    println!(
        "trusted: stored for {} in {}; check and run now accept exactly this certificate for that master",
        url.store_key(),
        store.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn fingerprint_mismatch(presented: &Fingerprint) -> String {
    format!(
        "refused: the presented leaf's fingerprint is {presented}, not the one given with --fingerprint; do not trust this master until its administrator confirms which is right"
    )
}

async fn fluent_bit(
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
                println!("wrote {}", path.display());
            }
            for path in &written.removed {
                println!("removed {} (it described other settings)", path.display());
            }
            pipeline
        }),
        None => fluent::Pipeline::build(&config, fluent::CaFile::Original, presented)
            .and_then(|pipeline| pipeline.render(format).map(|text| (pipeline, text)))
            .map(|(pipeline, text)| {
                print!("{text}");
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

async fn run_daemon(args: ConfigArgs, reconnect_on_reload: bool) -> Outcome {
    let target = daemon::load(&args, &env).map_err(|e| match e {
        // Devices may come back (a driver restarting): not a configuration error, so
        // exit 1 and let systemd restart the agent.
        daemon::LoadError::Devices(e) => CliError::Failed(format!("cannot find the devices to report: {e}")),
        other => CliError::Load(other),
    })?;
    let (controls_tx, mut controls) = mpsc::channel(8);
    forward_signals(controls_tx).map_err(|e| CliError::Failed(format!("cannot install signal handlers: {e}")))?;
    // det-agent run runs no containers: it answers the master's container requests at
    // once, so that no task waits on this node for a container that never starts.
    let (inbound, from_master) = mpsc::channel::<det_agent::link::FromMaster>(64);
    let (to_master, outbound) = mpsc::channel(64);
    tokio::spawn(daemon::serve_without_containers(from_master, to_master));
    // systemd (sd_notify) and Prometheus, both off unless asked for.
    let notifier = std::sync::Arc::new(det_agent::notify::Notifier::from_env(&env));
    tracing::info!(watchdog = %notifier.watchdog(), "systemd notifications");
    let metrics = match target.config.metrics.listen {
        Some(listen) => {
            let listener = listen.bind().await.map_err(|e| CliError::Usage(e.to_string()))?;
            if !listen.is_loopback() {
                tracing::warn!(%listen, "metrics and /healthz are served beyond this host, without authentication");
            }
            let metrics = det_agent::metrics::Metrics::new();
            tokio::spawn(det_agent::metrics::serve(listener, metrics.clone()));
            tracing::info!(%listen, "serving /metrics and /healthz");
            metrics
        }
        None => det_agent::metrics::Metrics::disabled(),
    };
    let mut reporters = daemon::Reporters::new(&target, notifier.clone(), metrics);
    let options = daemon::Options {
        reconnect_on_reload,
        heartbeat: Some(daemon::heartbeat(&notifier)),
        tap: reporters.tap(),
        ..daemon::Options::default()
    };
    let reload = move || daemon::load(&args, &env);
    let channels = Channels { inbound, outbound };
    match daemon::run_observed(target, reload, options, &mut controls, channels, &mut reporters).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            tracing::error!("{err}");
            notifier.status(&format!("gave up: {err}"));
            daemon::on_connection_lost(reporters.hooks()).await;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn forward_signals(controls: mpsc::Sender<Control>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let (control, name) = tokio::select! {
                _ = term.recv() => (Control::Shutdown, "SIGTERM"),
                _ = int.recv() => (Control::Shutdown, "SIGINT"),
                _ = hup.recv() => (Control::Reload, "SIGHUP"),
            };
            tracing::info!(signal = name, "signal received");
            if controls.send(control).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

async fn serve_dev_master(
    identity: Option<(PathBuf, PathBuf)>,
    test_cert: bool,
    client_ca: Option<PathBuf>,
    bind: IpAddr,
    port: Option<u16>,
    behaviour: Behaviour,
    options: dev_master::Options,
) -> Result<(), String> {
    let identity = match (identity, test_cert) {
        (Some((cert, key)), _) => Some((
            pem::load_certs(&cert).map_err(|e| e.to_string())?,
            pem::load_private_key(&key).map_err(|e| e.to_string())?,
        )),
        (None, true) => Some(dev_master::fixtures::identity("master")),
        (None, false) => None,
    };
    let client_ca = client_ca.map(|p| pem::load_certs(&p).map_err(|e| e.to_string())).transpose()?;
    if client_ca.is_some() && identity.is_none() {
        return Err("--client-ca needs TLS: give --cert and --key, or --test-cert".to_owned());
    }
    let config = identity
        .map(|(chain, key)| match client_ca {
            Some(cas) => dev_master::server_config_if_given(chain, key, cas).map_err(|e| e.to_string()),
            None => dev_master::server_config(chain, key, None).map_err(|e| e.to_string()),
        })
        .transpose()?;
    let port = port.unwrap_or(if config.is_some() {
        det_agent::config::DEFAULT_TLS_PORT
    } else {
        det_agent::config::DEFAULT_PLAIN_PORT
    });
    let tls = config.is_some();
    let mut master = DevMaster::serve_with(SocketAddr::new(bind, port), config, behaviour, options)
        .await
        .map_err(|e| format!("cannot start on {}: {e}", SocketAddr::new(bind, port)))?;
    println!("{}", serde_json::json!({"event": "listening", "address": master.addr().to_string(), "tls": tls}));
    loop {
        tokio::select! {
            event = master.next_event() => match event {
                Some(event) => println!("{}", serde_json::to_string(&event).unwrap_or_default()),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// The global logging flags, applied once the configuration (which may set the level and
/// color too) is loaded, so that its errors are printed plainly, before any logging.
struct Logging {
    level: Option<String>,
    color: Option<String>,
    format: LogFormat,
}

impl Logging {
    /// Loads the configuration, the global flags layered over it, then starts logging.
    fn load(&self, mut args: ConfigArgs) -> Result<(ConfigArgs, det_agent::Config), CliError> {
        args.log_level.clone_from(&self.level);
        args.log_color.clone_from(&self.color);
        let config = args.load(&env)?;
        self.init(&config.log);
        Ok((args, config))
    }

    /// Starts logging from the flags and the environment, for a command without a
    /// configuration.
    fn init_without_config(&self) -> Result<(), CliError> {
        let log = LogConfig::from_flags(self.level.as_deref(), self.color.as_deref(), &env)?;
        self.init(&log);
        Ok(())
    }

    fn init(&self, log: &LogConfig) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log.level.as_str()));
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        match self.format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => {
                builder.with_ansi(log.color && std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
            }
        }
    }
}

/// The devices this node would report to the master, for `check`.
struct DeviceCheck(Result<devices::Detection, String>);

/// Detects the devices as `run` will, on a blocking thread: the vendor tools run under
/// their timeout.
async fn detect_devices(config: &det_agent::Config) -> DeviceCheck {
    let options = config.devices.clone();
    let found = tokio::task::spawn_blocking(move || devices::detect_this_node(&options)).await;
    DeviceCheck(match found {
        Ok(found) => found.map_err(|e| e.to_string()),
        Err(e) => Err(format!("device detection stopped: {e}")),
    })
}

impl DeviceCheck {
    fn is_ok(&self) -> bool {
        self.0.is_ok()
    }

    /// The devices after the report, in its layout.
    fn to_text(&self, config: &det_agent::Config) -> String {
        let options = &config.devices;
        let mut text = match &self.0 {
            Err(error) => {
                return format!("devices        FAILED (slot_type {}): {error}\n", options.slot_type);
            }
            Ok(found) => format!(
                "devices        {} as the master will see them (slot_type {})\n",
                found.devices.len(),
                options.slot_type
            ),
        };
        if let Ok(found) = &self.0 {
            for device in &found.devices {
                text.push_str(&format!("  device       {device}, uuid {}\n", escape(&device.uuid)));
            }
            for notice in &found.notices {
                let label = if notice.level() == devices::Level::Warning { "warning" } else { "note" };
                text.push_str(&format!("  {label:<12} {notice}\n"));
            }
        }
        text
    }

    /// The devices as a JSON object: the slot type, the devices as the master receives
    /// them, the notices, or the error.
    fn to_json(&self, config: &det_agent::Config) -> serde_json::Value {
        let slot_type = config.devices.slot_type.as_str();
        match &self.0 {
            Ok(found) => {
                let notices: Vec<serde_json::Value> = found
                    .notices
                    .iter()
                    .map(|n| {
                        let level = if n.level() == devices::Level::Warning { "warning" } else { "info" };
                        serde_json::json!({"level": level, "message": n.to_string()})
                    })
                    .collect();
                serde_json::json!({"slot_type": slot_type, "ok": true, "devices": found.devices, "notices": notices})
            }
            Err(error) => serde_json::json!({"slot_type": slot_type, "ok": false, "error": error}),
        }
    }
}

/// The one warning about ignored options of Determined's agent, for commands that print.
fn warn_ignored(config: &det_agent::Config) {
    if let Some(warning) = config.ignored_warning() {
        eprintln!("det-agent: warning: {}", escape(&warning));
    }
}
