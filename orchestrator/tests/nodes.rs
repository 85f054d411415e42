//! `GET /api/v1/nodes` on the embedded deployment, in process: the real service with a stand-in
//! node that takes jobs through the embedded link and holds each until the test releases it.
//! The in-process node must show what it really does — busy with the job it holds, then idle
//! with one more job done — not a fixed idle entry — and the percent its job reported.

use crate::support;

use protocol::{ProgressEvent, Stage};
use serde_json::Value;
use support::http::{basic_form, job_id};
use support::node::StandIn;
use support::{start_with_nodes, TestService};

/// The one in-process node of `GET /api/v1/nodes`, and the live count.
async fn the_node(s: &TestService) -> Value {
    let (status, _, list) = s.get_json("/api/v1/nodes").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["live"], 1, "{list}");
    let nodes = list["nodes"].as_array().expect("a list of nodes");
    assert_eq!(nodes.len(), 1, "{list}");
    let node = nodes[0].clone();
    assert_eq!(node["node"], "in-process/cpu", "{node}");
    assert_eq!(node["device"], "cpu", "{node}");
    assert_eq!(node["in_process"], true, "{node}");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_node_shows_its_job_and_counts_jobs_done() {
    let mut stand_in = StandIn::with_progress(ProgressEvent {
        stage: Stage::Sampling,
        step: 16,
        total: 32,
        percent: 42.0,
        eta_seconds: Some(3.0),
        elapsed_seconds: 2.0,
    });
    let s = start_with_nodes(|_| {}, stand_in.runner.clone()).await;
    s.wait_ready().await;

    let node = the_node(&s).await;
    assert_eq!(node["state"], "idle", "{node}");
    assert!(node["job"].is_null(), "{node}");
    assert_eq!(node["jobs_done"], 0, "{node}");

    for done in 1..=2u64 {
        let id = job_id(&s.accepted(basic_form()).await);
        assert_eq!(stand_in.taken().await, id);
        s.wait_event(id.as_str(), "started").await;

        // While the node holds the job: busy with it.
        let node = the_node(&s).await;
        assert_eq!(node["state"], "busy", "{node}");
        assert_eq!(node["job"]["id"], id.as_str(), "{node}");
        assert_eq!(node["job"]["attempt"], 1, "{node}");
        assert_eq!(node["job"]["percent"], 42.0, "{node}");
        assert_eq!(node["jobs_done"], done - 1, "{node}");

        // Once it finished: idle, no job, one more done.
        stand_in.release();
        let succeeded = s.wait_event(id.as_str(), "succeeded").await;
        assert_eq!(succeeded["state"], "succeeded", "{succeeded}");
        let node = the_node(&s).await;
        assert_eq!(node["state"], "idle", "{node}");
        assert!(node["job"].is_null(), "{node}");
        assert_eq!(node["jobs_done"], done, "{node}");
    }
}
