//! A nats-server restart as the clients see it. A restarted server (even after `kill -9`: what
//! is on disk survives) has forgotten every pull request it held and never confirms what it had
//! not confirmed yet; the clients reconnect by themselves, but must pull (and acknowledge)
//! again at once rather than wait for the pull to expire. These tests pin that down: a
//! reconnect to the same server process is told apart from a restarted server
//! (`refrain_nats::server::ServerWatch`), and with pulls that would expire only after ten
//! minutes, jobs still flow right after restarts.
//!
//! Without nats-server (tools/fetch-nats-server.sh) or ONNX Runtime the tests are skipped with
//! a message, except in CI (`CI` set), where they fail.

mod support;

use std::time::Duration;

use refrain_nats::server::ServerWatch;
use refrain_nats::NatsConfig;
use support::*;

/// Waits only against hangs.
const GENEROUS: Duration = Duration::from_secs(60);

#[test]
fn a_restarted_server_is_told_from_a_reconnect_to_the_same_one() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let dir = TestDir::new();
    let mut nats = NatsServer::start(&binary, &dir.path().join("nats"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = NatsConfig {
        url: nats.url(),
        ..NatsConfig::default()
    };
    let client = runtime.block_on(async {
        let client = refrain_nats::connect(&config, "test")
            .await
            .expect("a client");
        ServerWatch::when_connected(&client, GENEROUS).await;
        client
    });
    let connects = || refrain_nats::server::connects(&client);

    // The same server process again (the connection dropped and came back).
    let watch = ServerWatch::now(&client);
    let before = connects();
    runtime.block_on(async {
        client.force_reconnect().await.expect("reconnect");
        tokio::time::timeout(GENEROUS, async {
            while connects() == before
                || client.connection_state() != async_nats::connection::State::Connected
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the client reconnects");
    });
    assert!(
        !watch.has_restarted(),
        "a reconnect to the same server is no restart"
    );

    // A new server process on the same port and store.
    nats.kill();
    nats.restart();
    runtime
        .block_on(async { tokio::time::timeout(GENEROUS, watch.restarted()).await })
        .expect("the client sees the restarted server");
    assert!(watch.has_restarted());
    assert!(
        !ServerWatch::now(&client).has_restarted(),
        "a watch taken after the restart has seen none"
    );
}

/// Pulls that a restarted server forgot are sent again as soon as the clients are back: here a
/// node's pull for a job and the orchestrator's pull of node events would otherwise wait ten
/// minutes to expire (`fetch_expires_seconds = 600`), and an event whose acknowledgement the
/// restart swallowed as long (`events_ack_wait_seconds = 600`), far longer than this test
/// waits for a job.
#[test]
fn jobs_flow_right_after_restarts_however_long_a_pull_would_wait() {
    let Some(mut app) = TestApp::nats()
        .steps(2)
        .env("REFRAIN_NATS__FETCH_EXPIRES_SECONDS", 600)
        .env("REFRAIN_NATS__EVENTS_ACK_WAIT_SECONDS", 600)
        .nodes(&["a"])
        .start()
    else {
        return;
    };
    let api = app.api();
    let mut jobs = vec![api.submit_song(95, 0)];
    for round in 0..3 {
        // Both sides are waiting on their pulls now: the node for the next job, the
        // orchestrator for the next events.
        let job = jobs.last().expect("a job");
        assert!(
            matches!(api.wait(&job.url, GENEROUS), Done::Wav(_)),
            "round {round}: job {} did not succeed",
            job.id
        );
        app.nats_server().restart();
        jobs.push(api.submit_song(95, round + 1));
    }
    let last = jobs.last().expect("a job");
    assert!(matches!(api.wait(&last.url, GENEROUS), Done::Wav(_)));
    for job in &jobs {
        let summary = api.summary(&job.id);
        assert_eq!(summary.succeeded, 1, "job {}: {summary:?}", job.id);
        assert_eq!(summary.attempts(), [1], "job {}: {summary:?}", job.id);
    }
}
