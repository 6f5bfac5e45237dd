//! `[dashboard]`: [`DashboardConfig`] and its default. A `SocketAddr` needs no further check.
//!
//! Owns the key; it serves nothing (`crate::api` does, on this address).

use super::text;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};

/// `[dashboard]`: the HTTP dashboard and API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Address to serve on, `<ip>:<port>`; port 0 = any free port. Omitted: `127.0.0.1:8080`
    /// (this machine only).
    #[serde(with = "text")]
    pub listen: SocketAddr,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
        }
    }
}
