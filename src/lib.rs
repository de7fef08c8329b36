//! det-agent connects a compute node to a Determined master over TLS, trusting the master
//! exactly as configured, and keeps that connection alive.
//!
//! The crate is layered; each module imports only from the layers below it (checked by
//! `tests/layers.rs`), bottom first:
//!
//! 1. Leaves: [`text`] (untrusted text made safe to show), `fsutil` (atomic files,
//!    bounded reads, the StrictModes rule on who may change a file), [`backoff`] (the reconnect schedule), [`x509`] (what a certificate
//!    says), [`host`] (master addresses), [`crypto`] (the TLS provider), the error types
//!    ([`ConfigError`], [`PemError`], [`StoreError`]), [`devices`] (what the node offers)
//!    and [`notify`] (systemd's sd_notify).
//! 2. Files: [`pem`] reads certificates and keys; [`store`] is the trust-on-first-use
//!    store shared with the `det` CLI, and its master addresses.
//! 3. [`config`]: `agent.yaml`, environment and flags, checked into a [`Config`].
//! 4. [`tls`]: the master verifier and the TLS client; [`dial`]: the one way every
//!    command reaches the master (addresses, proxy, TLS); [`expiry`]: the certificates
//!    the agent relies on, judged before they expire, and advice on pins that renewals
//!    break.
//! 5. [`link`]: the registered websocket to `/agents`; [`check`]: one dial, explained.
//! 6. What `det-agent run` is made of: [`metrics`], [`fluent_bit`], [`trust`] (the
//!    `trust` command), [`state_file`] (what the master said about itself, for tasks),
//!    [`task_env`], and [`daemon`] itself.
//! 7. [`dev_master`], a test double of the master, and [`demo`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod crypto;
pub mod devices;
mod error;
mod fsutil;
pub mod host;
pub mod notify;
pub mod text;
pub mod x509;

pub mod pem;
pub mod store;

pub mod config;

pub mod dial;
pub mod tls;

pub mod expiry;

pub mod check;
pub mod link;

pub mod daemon;
pub mod fluent_bit;
pub mod metrics;
pub mod state_file;
pub mod task_env;
pub mod trust;

pub mod demo;
pub mod dev_master;

pub use config::{Config, ConfigArgs, Host, TlsConfig, Trust};
pub use error::{ConfigError, Origin, PemError, StoreError};
