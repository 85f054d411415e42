//! How a node shows itself and sees the others: [`heartbeat`] publishes this node's
//! [`NodeAnnouncement`] on `refrain.nodes.<node>` every `nats.heartbeat_seconds`, on every
//! change of state and when the orchestrator pings (the last one says `stopped`); [`Peers`]
//! remembers the other nodes' heartbeats, so that [`Peers::runs`] can tell whether another live
//! node is running a job that the server delivered here again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use futures_util::StreamExt;
use protocol::JobId;
use refrain_nats::wire::{self, NodeAnnouncement, NodeState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What this node last heard from the other nodes (their heartbeats).
#[derive(Clone, Default)]
pub struct Peers {
    seen: Arc<std::sync::Mutex<HashMap<String, (Instant, NodeAnnouncement)>>>,
    /// This node's connection, and its connection count when this node last found it
    /// changed (and when): a peer's silence only counts from then on.
    link: Option<(Client, Arc<std::sync::Mutex<Connection>>)>,
}

/// A client's connection count, and when it was found at that count.
type Connection = (u64, Instant);

impl Peers {
    /// Listens to every node's heartbeats until `cancel` fires.
    pub async fn listen(client: &Client, cancel: CancellationToken) -> Peers {
        let connects = refrain_nats::server::connects(client);
        let last = Arc::new(std::sync::Mutex::new((connects, Instant::now())));
        let peers = Peers {
            link: Some((client.clone(), last.clone())),
            ..Peers::default()
        };
        let subject = format!("{}.*", wire::NODES_PREFIX);
        match client.subscribe(subject).await {
            Ok(mut sub) => {
                let seen = peers.seen.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    // Notes a new connection within a tenth of a second.
                    let mut look = tokio::time::interval(Duration::from_millis(100));
                    loop {
                        let message = tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = look.tick() => {
                                connected_since(&client, &last);
                                continue;
                            }
                            m = sub.next() => match m { Some(m) => m, None => break },
                        };
                        if let Ok(a) = serde_json::from_slice::<NodeAnnouncement>(&message.payload)
                        {
                            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                            seen.insert(a.node.clone(), (Instant::now(), a));
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen to other nodes' heartbeats"),
        }
        peers
    }

    /// Whether `node` said recently (within three of its heartbeats) that it runs `job`.
    /// Silence while this node could not hear anyone does not count: after this node lost its
    /// connection (a nats-server restart), a peer's last word stands until this node has been
    /// connected again for three of the peer's heartbeats. Otherwise a job whose delivery
    /// outlived `ack_wait` during the outage would be run a second time here while the peer
    /// that ran it is still reporting its result.
    pub fn runs(&self, node: &str, job: &JobId) -> bool {
        let hearing = self
            .link
            .as_ref()
            .map(|(client, last)| connected_since(client, last));
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(node).is_some_and(|(at, a)| {
            let silent = match hearing {
                None => at.elapsed(),
                Some(Some(since)) => since.max(*at).elapsed(),
                // Disconnected now: nobody can be heard, so nobody is judged.
                Some(None) => Duration::ZERO,
            };
            let fresh = silent <= Duration::from_millis(a.heartbeat_ms.max(1000)) * 3;
            let running =
                a.state == NodeState::Busy && a.job.as_ref().is_some_and(|j| &j.id == job);
            fresh && (running || a.reporting.contains(job))
        })
    }
}

/// Since when `client` has been hearing: the moment its connection was found new (looked at
/// every 0.1 s, or since the node started listening); `None` while disconnected.
fn connected_since(client: &Client, last: &std::sync::Mutex<Connection>) -> Option<Instant> {
    if client.connection_state() != async_nats::connection::State::Connected {
        return None;
    }
    let connects = refrain_nats::server::connects(client);
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    if last.0 != connects {
        *last = (connects, Instant::now());
    }
    Some(last.1)
}

/// Publishes the node's announcement every heartbeat, on every change of state and when the
/// orchestrator pings; the last one says `stopped`.
pub async fn heartbeat(
    client: Client,
    mut status: watch::Receiver<NodeAnnouncement>,
    every: Duration,
    cancel: CancellationToken,
) {
    let subject = wire::node_subject(&status.borrow().node);
    let mut ping = match client.subscribe(wire::REGISTRY_PING).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for registry pings");
            None
        }
    };
    let mut tick = tokio::time::interval(every);
    let mut status_open = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
            changed = status.changed(), if status_open => {
                if changed.is_err() {
                    status_open = false;
                    continue;
                }
            }
            Some(_) = async { match ping.as_mut() { Some(p) => p.next().await, None => None } } => {}
        }
        let announcement = status.borrow_and_update().clone();
        announce(&client, &subject, &announcement).await;
    }
    let mut last = status.borrow().clone();
    last.state = NodeState::Stopped;
    last.job = None;
    announce(&client, &subject, &last).await;
    let _ = client.flush().await;
}

async fn announce(client: &Client, subject: &str, announcement: &NodeAnnouncement) {
    match serde_json::to_vec(announcement) {
        Ok(payload) => {
            if let Err(e) = client.publish(subject.to_string(), payload.into()).await {
                tracing::debug!(error = %e, "cannot announce the node");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode the node announcement"),
    }
}
