//! det-agent connects a compute node to a Determined master over TLS, trusting the master
//! exactly as configured.
//!
//! The layers, from the bottom: [`config`] turns `agent.yaml`, environment variables and
//! flags into a checked [`Config`]; [`pem`] and [`x509`] read certificate files and say
//! what a certificate contains; [`tls`] holds the master verifier and builds rustls
//! client configurations; [`check`] dials the master once and reports what happened;
//! [`link`] and [`daemon`] keep the verified websocket to the master up, and [`metrics`]
//! serves what they record to Prometheus; [`fluent_bit`]
//! writes a log shipper configuration that trusts the master the same way;
//! [`notify`] tells systemd how the daemon is doing (sd_notify);
//! [`dev_master`] is a test double of the master for the demo, tests and benches.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod daemon;

pub mod backoff;
pub mod check;
pub mod demo;
pub mod dev_master;
pub mod devices;
pub mod dial;
mod error;
pub mod fluent_bit;
mod fsutil;
pub mod link;
pub mod metrics;
pub mod notify;
pub mod pem;
pub mod task_env;
pub mod text;
pub mod tls;
pub mod trust;
pub mod x509;

pub use config::{Config, ConfigArgs, Host, TlsConfig, Trust};
pub use error::{ConfigError, Origin, PemError};
