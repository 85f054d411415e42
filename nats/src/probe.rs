//! A one-off look at a NATS server for `refrain doctor`: can it be reached with the configured
//! credentials within a deadline, which version is it, and does it offer JetStream to this
//! account. The deployment needs nats-server 2.10 or later (async-nats' key-value and consumer
//! calls) with JetStream enabled; this says which of those fails, instead of a service that
//! retries a connection forever.

use std::time::Duration;

use crate::{connect, NatsConfig, NatsError};

/// The oldest nats-server the deployment works with.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

/// What [`probe`] found on a server it reached.
#[derive(Debug, Clone)]
pub struct ServerProbe {
    /// The server's version string, e.g. `2.15.1`.
    pub version: String,
    /// Whether the version is at least [`MIN_SERVER_VERSION`].
    pub version_ok: bool,
    /// JetStream for this account: `Ok(streams)` or why not.
    pub jetstream: Result<usize, String>,
}

/// Connects to `config.url` and asks the server; gives up after `deadline`.
pub async fn probe(config: &NatsConfig, deadline: Duration) -> Result<ServerProbe, NatsError> {
    let unreachable = |message: String| NatsError::Connect {
        url: config.url.clone(),
        message,
    };
    let client = connect(config, "refrain-doctor").await?;
    // `connect` returns before the connection is up; a flush needs it.
    match tokio::time::timeout(deadline, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Err(_) => return Err(unreachable(format!("no connection within {deadline:?}"))),
    }
    let version = client.server_info().version;
    let jetstream = async_nats::jetstream::new(client.clone());
    let jetstream = match tokio::time::timeout(deadline, jetstream.query_account()).await {
        Ok(Ok(account)) => Ok(account.streams),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no JetStream answer within {deadline:?}")),
    };
    Ok(ServerProbe {
        version_ok: version_at_least(&version, MIN_SERVER_VERSION),
        version,
        jetstream,
    })
}

/// Whether `version` (`major.minor[.patch][-suffix]`) is at least `min`.
pub fn version_at_least(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= min,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_versions() {
        assert!(version_at_least("2.10.0", (2, 10)));
        assert!(version_at_least("v2.15.1", (2, 10)));
        assert!(version_at_least("3.0.0-beta", (2, 10)));
        assert!(!version_at_least("2.9.25", (2, 10)));
        assert!(!version_at_least("garbage", (2, 10)));
    }
}
