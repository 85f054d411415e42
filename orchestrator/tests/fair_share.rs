//! Fair share end to end on the embedded deployment, in process: the real service
//! (`service::start`: admission, the durable embedded queue, the embedded link, the job core,
//! the HTTP API) with a stand-in node that holds each job until the test releases it.
//!
//! No front end lets a client choose an owner yet (every DiffRhythm request is `anonymous`,
//! and the owner must come from an identity the server trusts, never from a header the client
//! sets), so the jobs are submitted through `App::submit` with their owners and priorities,
//! as a front end with identities will; everything after admission is the production path,
//! observed over HTTP: queue positions on `GET /api/v1/jobs/{id}`, starts and successes on the
//! job's event stream.

use crate::support;

use protocol::{AudioFormat, JobId, JobSpec, Owner, Priority, Source, StyleSpec};
use refrain_orchestrator::service::JobMeta;
use support::node::StandIn;
use support::{start_with_nodes, TestService};

fn spec(seed: u64) -> JobSpec {
    JobSpec {
        lyrics: String::new(),
        style: StyleSpec::Prompt("upbeat electronic dance".into()),
        seconds: 95,
        seed,
        steps: None,
        cfg_strength: None,
        variants: 1,
        chunked: false,
        edit: None,
        init: None,
        output_subdir: None,
        format: AudioFormat::Wav,
    }
}

/// Admits a job of `owner` (a `key:` owner) in `priority`.
async fn submit(s: &TestService, owner: &str, priority: Priority, seed: u64) -> JobId {
    let meta = JobMeta {
        owner: Owner::new("key", owner),
        priority: Some(priority),
        ..JobMeta::anonymous(Source::RefrainApi)
    };
    s.app.submit(spec(seed), meta).await.expect("admitted").id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_take_turns_and_batch_jobs_wait_for_people() {
    let mut node = StandIn::new();
    let s = start_with_nodes(|_| {}, node.runner.clone()).await;
    s.wait_ready().await;
    use Priority::{Batch, Interactive};

    // Alice's first job keeps the only node busy while everything else arrives: a schedule's
    // batch job first, then three more of Alice's, two of Bob's, one of Carol's.
    let a1 = submit(&s, "alice", Interactive, 1).await;
    assert_eq!(node.taken().await, a1);
    s.wait_event(a1.as_str(), "started").await;
    let d1 = submit(&s, "dave", Batch, 2).await;
    let a2 = submit(&s, "alice", Interactive, 3).await;
    let a3 = submit(&s, "alice", Interactive, 4).await;
    let a4 = submit(&s, "alice", Interactive, 5).await;
    let b1 = submit(&s, "bob", Interactive, 6).await;
    let b2 = submit(&s, "bob", Interactive, 7).await;
    let c1 = submit(&s, "carol", Interactive, 8).await;

    // People before batches; among people, owners in turn (those waiting longest first),
    // each owner's jobs in order.
    let expected = [&b1, &c1, &a2, &b2, &a3, &a4, &d1];
    for (position, id) in expected.iter().enumerate() {
        let (_, _, job) = s.get_json(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(job["state"], "queued", "{job}");
        assert_eq!(job["queue_position"], position, "{id}: {job}");
    }

    // The node takes them in that order, one at a time.
    let mut previous = a1;
    for id in expected {
        node.release();
        let done = s.wait_event(previous.as_str(), "succeeded").await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(&node.taken().await, id, "after {previous}");
        let started = s.wait_event(id.as_str(), "started").await;
        assert_eq!(started["attempt"], 1, "{started}");
        previous = id.clone();
    }
    node.release();
    s.wait_event(previous.as_str(), "succeeded").await;
    let (_, _, status) = s.get_json("/status").await;
    assert_eq!(status["jobs"]["succeeded"], 8, "{status}");
    assert_eq!(status["jobs"]["queued"], 0, "{status}");
}
