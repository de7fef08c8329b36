//! Binding `metrics.listen` (a [`Listen`], parsed with the configuration), with errors
//! that say what is in the way.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use crate::config::{Listen, ListenError};

impl Listen {
    /// Binds the address.
    ///
    /// # Errors
    /// [`BindError`], naming the address and what to change.
    pub async fn bind(&self) -> Result<TcpListener, BindError> {
        TcpListener::bind(self.addr()).await.map_err(|source| BindError { addr: self.addr(), source })
    }
}

/// The endpoint's address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("metrics.listen: cannot listen on {addr}: {source}{}", bind_hint(.source))]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// What the operating system said.
    pub source: io::Error,
}

fn bind_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::AddrInUse => "; another program (or another det-agent) holds this port, so choose another port",
        io::ErrorKind::PermissionDenied => {
            "; ports below 1024 need privileges det-agent should not have, so choose a port above 1023"
        }
        io::ErrorKind::AddrNotAvailable => {
            "; this host has no such address, so use 127.0.0.1 or an address of one of its interfaces"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_is_explained() {
        let first = Listen::from(SocketAddr::from(([127, 0, 0, 1], 0))).bind().await.unwrap();
        let taken = Listen::from(first.local_addr().unwrap());
        let message = taken.bind().await.unwrap_err().to_string();
        assert!(message.starts_with(&format!("metrics.listen: cannot listen on {taken}: ")), "{message}");
        assert!(message.ends_with("holds this port, so choose another port"), "{message}");
    }
}
