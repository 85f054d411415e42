//! Telling a restarted nats-server from a connection blip, for whatever waits on the server.
//!
//! A pull request and an unanswered request live in the server's memory: a nats-server that
//! restarts (even `kill -9`; everything on disk survives) forgets every pull it was holding and
//! never answers what it had not answered yet, and a client waiting on one would only notice
//! when the pull should have expired or the request timed out. The client reconnects on its
//! own; what it does not do is pull or ask again. A [`ServerWatch`] is taken before a pull or a
//! confirmed acknowledgement is sent and resolves [`ServerWatch::restarted`] as soon as the
//! client is connected to a server other than the one it was connected to then (a started
//! nats-server has a new server id), so the caller pulls or acknowledges again at once instead
//! of waiting out `fetch_expires_seconds` or a timeout. After a mere reconnect to the same
//! server process the pull is still there (the client subscribes its reply subject again) and
//! is left alone: pulling again then could hand a job to the pull that was given up, where it
//! would wait for `ack_wait` before going to a node.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::Client;

/// How often a waiting pull looks at the client's connection (an atomic load and a lock).
const POLL: Duration = Duration::from_millis(50);

/// The server the client was connected to when something was sent.
#[derive(Debug, Clone)]
pub struct ServerWatch {
    client: Client,
    connects: u64,
    server_id: Option<String>,
}

impl ServerWatch {
    /// Notes the server the client is connected to (or was last, while disconnected): call it
    /// right before sending. Taken in the moment after a reconnect before async-nats stores the
    /// new server's INFO, it notes the server before: a later reconnect may then be taken for a
    /// restart, which costs one needless pull again, never a missed one.
    pub fn now(client: &Client) -> ServerWatch {
        ServerWatch {
            client: client.clone(),
            connects: connects(client),
            server_id: client.try_server_info().map(|i| i.server_id),
        }
    }

    /// Waits (up to `wait`) until the client is connected and knows its server, then
    /// [`ServerWatch::now`]: before a pull. A pull sent while disconnected would be buffered and
    /// reach whichever server comes next, so it is not sent then.
    ///
    /// async-nats reports the first connection (its count and `Connected`) a moment before it
    /// stores the server's INFO; a watch taken in that moment would note no server at all and
    /// take a later reconnect to the same server for a restart. So it also waits for the INFO.
    pub async fn when_connected(client: &Client, wait: Duration) -> ServerWatch {
        let deadline = tokio::time::Instant::now() + wait;
        while (client.connection_state() != State::Connected || client.try_server_info().is_none())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(POLL).await;
        }
        ServerWatch::now(client)
    }

    /// Whether the server noted is gone: the client connected again since, to a server with
    /// another id.
    pub fn has_restarted(&self) -> bool {
        if connects(&self.client) == self.connects
            || self.client.connection_state() != State::Connected
        {
            return false;
        }
        let now = self.client.try_server_info().map(|i| i.server_id);
        now.is_none() || now != self.server_id
    }

    /// Resolves once [`ServerWatch::has_restarted`] holds; pending forever otherwise.
    pub async fn restarted(&self) {
        while !self.has_restarted() {
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Successful connections of the client so far (the first one and every reconnect).
pub fn connects(client: &Client) -> u64 {
    client.statistics().connects.load(Ordering::Relaxed)
}
