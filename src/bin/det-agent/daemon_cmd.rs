//! `det-agent run`: the daemon, its signals, and what it reports (systemd, metrics).

use std::process::ExitCode;

use det_agent::config::{ConfigArgs, Listen};
use det_agent::daemon::{self, Channels, Control};
use tokio::sync::mpsc;

use crate::{env, CliError, Outcome};

pub(crate) async fn run_daemon(args: ConfigArgs, reconnect_on_reload: bool) -> Outcome {
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
    // The reload runs on tokio's blocking pool, beside the link (daemon::run).
    let bound = target.config.metrics.listen;
    let reload = move || {
        let reloaded = daemon::load(&args, &env)?;
        warn_if_metrics_moved(bound, reloaded.config.metrics.listen);
        Ok(reloaded)
    };
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

/// The metrics endpoint is bound once, at start: a reload that changes `metrics.listen`
/// (compared with what is bound, whatever reloads came between) says that it does not apply.
fn warn_if_metrics_moved(bound: Option<Listen>, reloaded: Option<Listen>) {
    if bound != reloaded {
        let name = |listen: Option<Listen>| listen.map_or_else(|| "none".to_owned(), |l| l.to_string());
        tracing::warn!(
            "metrics.listen changed from {} to {}, but the metrics endpoint is set up once, at start: the change \
             takes effect at the next start (restart the service: systemctl restart det-agent); until then \
             {}",
            name(bound),
            name(reloaded),
            match bound {
                Some(listen) => format!("/metrics and /healthz stay on {listen}"),
                None => "metrics stay off".to_owned(),
            }
        );
    }
}

pub(crate) fn forward_signals(controls: mpsc::Sender<Control>) -> std::io::Result<()> {
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
