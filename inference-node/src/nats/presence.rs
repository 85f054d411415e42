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
}

impl Peers {
    /// Listens to every node's heartbeats until `cancel` fires.
    pub async fn listen(client: &Client, cancel: CancellationToken) -> Peers {
        let peers = Peers::default();
        let subject = format!("{}.*", wire::NODES_PREFIX);
        match client.subscribe(subject).await {
            Ok(mut sub) => {
                let seen = peers.seen.clone();
                tokio::spawn(async move {
                    loop {
                        let message = tokio::select! {
                            _ = cancel.cancelled() => break,
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
    pub fn runs(&self, node: &str, job: &JobId) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(node).is_some_and(|(at, a)| {
            let fresh = at.elapsed() <= Duration::from_millis(a.heartbeat_ms.max(1000)) * 3;
            fresh && a.state == NodeState::Busy && a.job.as_ref().is_some_and(|j| &j.id == job)
        })
    }
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
