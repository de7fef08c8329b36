//! `det-agent dev-master`: the test double of the master, printing its events.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use det_agent::dev_master::{self, Behaviour, DevMaster};
use det_agent::pem;

pub(crate) async fn serve_dev_master(
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
    outln!("{}", serde_json::json!({"event": "listening", "address": master.addr().to_string(), "tls": tls}));
    loop {
        tokio::select! {
            event = master.next_event() => match event {
                Some(event) => outln!("{}", serde_json::to_string(&event).unwrap_or_default()),
                None => return Ok(()),
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
