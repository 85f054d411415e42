//! The `[nats]` configuration section, shared by `refrain serve` (inside its `Config`) and
//! `refrain node`: the connection and the delivery settings. [`NatsConfig::validate`] checks
//! them against each other.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The NATS JetStream backend (`queue.backend = "nats"`), shared by `refrain serve` and
/// `refrain node`. Stream, consumer and bucket names are fixed (see [`crate::wire`]); these
/// are the connection and the delivery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222` (`tls://…` requires TLS).
    pub url: String,
    /// A NATS credentials file (`.creds`: JWT and NKey seed) to authenticate with.
    pub credentials_file: Option<PathBuf>,
    /// A token to authenticate with.
    pub token: Option<String>,
    /// User and password to authenticate with.
    pub user: Option<String>,
    pub password: Option<String>,
    /// A PEM file of CA certificates to trust for TLS (implies TLS).
    pub tls_ca_file: Option<PathBuf>,
    /// Seconds a node may hold a job without an in-progress ack before it is delivered again
    /// (nodes send one every third of it while a job runs): how soon the job of a dead or
    /// cut-off node runs elsewhere. Shorter fails over sooner; too short for the network or a
    /// stalled node (a swap storm, a long pause) delivers a job that is still running a second
    /// time (harmless: the second run waits for the first, or its late result is ignored, but
    /// the GPU time is lost).
    pub ack_wait_seconds: u64,
    /// Seconds the orchestrator may hold a node event without acknowledging it before the
    /// server delivers it again. Events a stopped orchestrator had taken are applied at once
    /// when it starts again (it rewinds its consumer to the first unacknowledged event), so
    /// this only matters while it runs: long enough to apply a batch of results.
    pub events_ack_wait_seconds: u64,
    /// Jobs in flight at once over all nodes; must be at least the number of nodes.
    pub max_ack_pending: i64,
    /// Seconds within which a second publish of the same job id is dropped.
    pub duplicate_window_seconds: u64,
    /// Hours after which undelivered jobs, events and files are dropped by the server.
    pub max_age_hours: u64,
    /// Seconds one pull request waits for a job or events; each idle node (and the
    /// orchestrator's events consumer) sends one pull per period. A pull a restarted server
    /// forgot is sent again as soon as the client is connected to it again; only a restart
    /// the client did not notice leaves it waiting until this has passed (plus 1 s).
    pub fetch_expires_seconds: u64,
    /// Longest pause, in milliseconds, between two attempts to reconnect to a nats-server that
    /// went away (the first ones come 0.1 s, 0.2 s, … apart). It bounds how long after the
    /// server is back a client notices; shorter costs one more connection attempt per client
    /// per period while the server is down.
    pub reconnect_max_delay_ms: u64,
    /// Seconds between two node heartbeats; a node unheard for 3 of them is listed as lost.
    /// A redelivered job whose last run was on a node still listed as alive waits for that
    /// node to finish or be lost, so 3 heartbeats bound the fail-over time along with
    /// `ack_wait_seconds`.
    pub heartbeat_seconds: u64,
    /// Seconds a job waits before it is delivered again after a node error.
    pub retry_delay_seconds: u64,
    /// Stored chunk size of result and input files in the object store, bytes.
    pub object_chunk_bytes: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            token: None,
            user: None,
            password: None,
            tls_ca_file: None,
            ack_wait_seconds: 10,
            events_ack_wait_seconds: 60,
            max_ack_pending: 256,
            duplicate_window_seconds: 120,
            max_age_hours: 7 * 24,
            fetch_expires_seconds: 3,
            reconnect_max_delay_ms: 1000,
            heartbeat_seconds: 2,
            retry_delay_seconds: 2,
            object_chunk_bytes: 512 * 1024,
        }
    }
}

impl NatsConfig {
    /// Checks the delivery settings against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("nats.url must name a server, e.g. nats://127.0.0.1:4222".into());
        }
        if self.user.is_some() != self.password.is_some() {
            return Err("nats.user and nats.password go together".into());
        }
        if self.ack_wait_seconds < 3 {
            return Err("nats.ack_wait_seconds must be at least 3".into());
        }
        if self.events_ack_wait_seconds < 3 {
            return Err("nats.events_ack_wait_seconds must be at least 3".into());
        }
        if self.max_ack_pending < 1 {
            return Err(
                "nats.max_ack_pending must be at least 1 (and at least the number of nodes)".into(),
            );
        }
        if self.fetch_expires_seconds == 0 || self.heartbeat_seconds == 0 || self.max_age_hours == 0
        {
            return Err(
                "nats.fetch_expires_seconds, heartbeat_seconds and max_age_hours must be positive"
                    .into(),
            );
        }
        if !(100..=60_000).contains(&self.reconnect_max_delay_ms) {
            return Err("nats.reconnect_max_delay_ms must be from 100 to 60000".into());
        }
        if !(1024..=1024 * 1024).contains(&self.object_chunk_bytes) {
            return Err("nats.object_chunk_bytes must be from 1024 to 1048576".into());
        }
        Ok(())
    }
}
