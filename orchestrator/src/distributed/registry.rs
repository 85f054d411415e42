//! The node registry: which inference nodes exist and what they do, for `GET /api/v1/nodes`
//! and the `refrain_nodes` gauge.
//!
//! Remote nodes announce themselves on `refrain.nodes.<node>` (core NATS) when they start, on
//! every state change and every `nats.heartbeat_seconds`; the orchestrator asks them all to
//! announce at once when it starts (`refrain.registry.ping`). A node unheard for three of its
//! heartbeat intervals is listed as `lost`, and forgotten after ten minutes; a node that shut
//! down cleanly says so (`stopped`) and is forgotten after a minute. In-process nodes of the
//! embedded deployment are listed too, always live. [`NodeRegistry::watch_live`] follows the
//! number of live nodes (the NATS dispatcher publishes one job per live node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::Client;
use futures_util::StreamExt;
use prometheus::IntGauge;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::wire::{self, CurrentJob, NodeAnnouncement, NodeState};
use super::DistributedError;

/// Heartbeats a node may miss before it is listed as lost.
const MISSED_HEARTBEATS: u32 = 3;
/// Lost nodes are forgotten after this long.
const FORGET_LOST: Duration = Duration::from_secs(600);
/// Stopped nodes are forgotten after this long.
const FORGET_STOPPED: Duration = Duration::from_secs(60);

/// One node as `GET /api/v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub node: String,
    pub host: String,
    pub device: String,
    pub bundle_name: String,
    pub bundle_version: String,
    /// `starting`, `idle`, `busy`, `stopped` or `lost` (no heartbeat for a while).
    #[schema(example = "busy")]
    pub state: String,
    /// The job it is running: `{"id", "attempt", "percent"}`.
    #[schema(value_type = Option<Object>, example = json!({"id": "3f0c9a1e8b7d4c2f9e6a5b4c3d2e1f00", "attempt": 1, "percent": 42.0}))]
    pub job: Option<CurrentJob>,
    pub jobs_done: u64,
    /// Seconds since the last heartbeat.
    pub last_seen_seconds: f64,
    pub started_ms: u64,
    /// True for a node in the orchestrator's own process.
    pub in_process: bool,
    pub version: String,
}

struct Entry {
    announcement: NodeAnnouncement,
    seen: Instant,
    in_process: bool,
}

impl Entry {
    fn lost(&self, now: Instant) -> bool {
        let allowed =
            Duration::from_millis(self.announcement.heartbeat_ms.max(1000)) * MISSED_HEARTBEATS;
        !self.in_process && now.duration_since(self.seen) > allowed
    }

    fn live(&self, now: Instant) -> bool {
        self.announcement.state != NodeState::Stopped && !self.lost(now)
    }
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct NodeRegistry {
    nodes: Arc<Mutex<HashMap<String, Entry>>>,
    gauge: IntGauge,
    live: watch::Sender<usize>,
}

impl std::fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRegistry").finish_non_exhaustive()
    }
}

impl NodeRegistry {
    /// An empty registry that keeps `gauge` at the number of live nodes.
    pub fn new(gauge: IntGauge) -> NodeRegistry {
        gauge.set(0);
        NodeRegistry {
            nodes: Arc::new(Mutex::new(HashMap::new())),
            gauge,
            live: watch::channel(0).0,
        }
    }

    /// The number of live nodes, updated whenever it changes (a node announces itself, stops,
    /// or is found lost by the sweep every second).
    pub fn watch_live(&self) -> watch::Receiver<usize> {
        self.live.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Every change is a single insert or retain: a poisoned map is still consistent.
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an announcement.
    pub fn record(&self, announcement: NodeAnnouncement) {
        let node = announcement.node.clone();
        if announcement.state == NodeState::Stopped {
            tracing::info!(%node, "node stopped");
        }
        let mut nodes = self.lock();
        if !nodes.contains_key(&node) {
            tracing::info!(%node, device = %announcement.device, host = %announcement.host, "node joined");
        }
        nodes.insert(
            node,
            Entry {
                announcement,
                seen: Instant::now(),
                in_process: false,
            },
        );
        drop(nodes);
        self.refresh();
    }

    /// Lists a node that runs in this process (always live).
    pub fn add_in_process(&self, announcement: NodeAnnouncement) {
        let node = announcement.node.clone();
        self.lock().insert(
            node,
            Entry {
                announcement,
                seen: Instant::now(),
                in_process: true,
            },
        );
        self.refresh();
    }

    /// Updates a node of this process: the job it now runs (`None`: idle), and whether it
    /// just finished one.
    pub fn update_in_process(&self, node: &str, job: Option<(&protocol::JobId, u32)>, done: bool) {
        let mut nodes = self.lock();
        if let Some(entry) = nodes.get_mut(node) {
            let a = &mut entry.announcement;
            a.state = if job.is_some() {
                NodeState::Busy
            } else {
                NodeState::Idle
            };
            a.job = job.map(|(id, attempt)| CurrentJob {
                id: id.clone(),
                attempt,
                percent: 0.0,
            });
            if done {
                a.jobs_done += 1;
            }
            entry.seen = Instant::now();
        }
    }

    /// A node of this process reports progress of `job`: its overall percent, if it still runs
    /// that job.
    pub fn progress_in_process(&self, node: &str, job: &protocol::JobId, percent: f32) {
        let mut nodes = self.lock();
        if let Some(entry) = nodes.get_mut(node) {
            if let Some(current) = entry.announcement.job.as_mut().filter(|j| j.id == *job) {
                current.percent = percent;
            }
            entry.seen = Instant::now();
        }
    }

    /// A node of this process finished `job`: one more job done, and idle unless it runs
    /// another job by now.
    pub fn finished_in_process(&self, node: &str, job: &protocol::JobId) {
        let mut nodes = self.lock();
        if let Some(entry) = nodes.get_mut(node) {
            let a = &mut entry.announcement;
            if a.job.as_ref().is_none_or(|j| j.id == *job) {
                a.state = NodeState::Idle;
                a.job = None;
            }
            a.jobs_done += 1;
            entry.seen = Instant::now();
        }
    }

    /// Every known node, by name.
    pub fn list(&self) -> Vec<NodeView> {
        let now = Instant::now();
        let nodes = self.lock();
        let mut out: Vec<NodeView> = nodes
            .values()
            .map(|e| {
                let a = &e.announcement;
                let state = if e.lost(now) {
                    "lost"
                } else {
                    match a.state {
                        NodeState::Starting => "starting",
                        NodeState::Idle => "idle",
                        NodeState::Busy => "busy",
                        NodeState::Stopped => "stopped",
                    }
                };
                NodeView {
                    node: a.node.clone(),
                    host: a.host.clone(),
                    device: a.device.clone(),
                    bundle_name: a.bundle_name.clone(),
                    bundle_version: a.bundle_version.clone(),
                    state: state.into(),
                    job: a.job.clone(),
                    jobs_done: a.jobs_done,
                    last_seen_seconds: now.duration_since(e.seen).as_secs_f64(),
                    started_ms: a.started_ms,
                    in_process: e.in_process,
                    version: a.version.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// Nodes that are up (announced recently and not stopped).
    pub fn live(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|e| e.live(now)).count()
    }

    /// Forgets long-lost and stopped nodes and updates the gauge.
    fn refresh(&self) {
        let now = Instant::now();
        let mut nodes = self.lock();
        nodes.retain(|_, e| {
            let quiet = now.duration_since(e.seen);
            e.in_process
                || !((e.announcement.state == NodeState::Stopped && quiet > FORGET_STOPPED)
                    || (e.lost(now) && quiet > FORGET_LOST))
        });
        let live = nodes.values().filter(|e| e.live(now)).count();
        drop(nodes);
        self.gauge.set(i64::try_from(live).unwrap_or(i64::MAX));
        self.live
            .send_if_modified(|n| std::mem::replace(n, live) != live);
    }

    /// Listens to node announcements until `cancel` fires, and asks every node to announce.
    pub async fn start(
        &self,
        client: Client,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<(), DistributedError> {
        let subject = format!("{}.*", wire::NODES_PREFIX);
        let mut sub = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| DistributedError::nats(format!("subscribe {subject}"), e))?;
        if let Err(e) = client.publish(wire::REGISTRY_PING, "".into()).await {
            tracing::debug!(error = %e, "cannot ask nodes to announce (they will at their next heartbeat)");
        }
        let registry = self.clone();
        tracker.spawn(async move {
            let mut sweep = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = sweep.tick() => registry.refresh(),
                    m = sub.next() => match m {
                        None => break,
                        Some(m) => match serde_json::from_slice::<NodeAnnouncement>(&m.payload) {
                            Ok(a) => registry.record(a),
                            Err(e) => tracing::debug!(subject = %m.subject, error = %e, "ignoring an undecodable node announcement"),
                        },
                    },
                }
            }
            let _ = sub.unsubscribe().await;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(node: &str, state: NodeState, heartbeat_ms: u64) -> NodeAnnouncement {
        NodeAnnouncement {
            node: node.into(),
            host: "h".into(),
            device: "cpu".into(),
            bundle_name: "b".into(),
            bundle_version: "1".into(),
            state,
            job: None,
            reporting: Vec::new(),
            jobs_done: 0,
            started_ms: 0,
            heartbeat_ms,
            version: "0".into(),
        }
    }

    #[test]
    fn live_lost_and_stopped() {
        let gauge = IntGauge::new("t_nodes", "t").unwrap();
        let r = NodeRegistry::new(gauge.clone());
        let mut live = r.watch_live();
        r.record(announcement("a", NodeState::Idle, 5000));
        r.record(announcement("b", NodeState::Busy, 5000));
        assert_eq!((r.live(), gauge.get()), (2, 2));
        assert!(live.has_changed().unwrap());
        assert_eq!(*live.borrow_and_update(), 2);
        r.record(announcement("b", NodeState::Stopped, 5000));
        assert_eq!((r.live(), gauge.get(), *live.borrow()), (1, 1, 1));
        // A node whose heartbeats stopped: pretend it was last seen long ago.
        r.lock().get_mut("a").unwrap().seen = Instant::now() - Duration::from_secs(16);
        let list = r.list();
        assert_eq!(
            list.iter().map(|n| n.state.as_str()).collect::<Vec<_>>(),
            ["lost", "stopped"]
        );
        r.refresh();
        assert_eq!(gauge.get(), 0);
        r.lock().get_mut("a").unwrap().seen = Instant::now() - FORGET_LOST - Duration::from_secs(1);
        r.refresh();
        assert_eq!(r.list().len(), 1);
    }
}
