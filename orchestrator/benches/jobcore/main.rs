//! Benchmarks of the job core (`cargo bench -p refrain-orchestrator --bench jobcore`): the
//! numbers behind `docs/benchmarks.md`. It needs no GPU and no ONNX Runtime.
//!
//! The service is started with [`refrain_orchestrator::service::start`], the wiring of
//! `refrain serve` (sled store and embedded queue in a temporary directory, the committed test
//! bundle, the HTTP server on 127.0.0.1), with one in-process node that reports its bundle
//! loaded and then takes no job: submitted jobs stay queued. Then, printed as one table:
//!
//! * **fan-out** ([`fanout`]): `BENCH_SUBSCRIBERS` (1,000) subscriptions follow one running job
//!   (`App::subscribe`); `BENCH_EVENTS` (200) progress events and the final `succeeded` go
//!   through `Lifecycle`, paced (`BENCH_EVENT_INTERVAL_MS`, 5 ms, about a real sampler step)
//!   and in a burst. Every subscriber must receive every event, in order; the delay is from
//!   just before the `Lifecycle` call to the subscriber's receipt.
//! * **SSE over HTTP** ([`sse`]): `BENCH_SSE_STREAMS` (1,000) clients on
//!   `GET /api/v1/jobs/{id}/events` of one running job, `BENCH_SSE_EVENTS` (50) progress events
//!   and the end; every stream must receive every event; delay and memory per stream.
//! * **scale** ([`scale`]): the store is filled to each size of `BENCH_STORE_SIZES`
//!   (`1000,10000,100000`), a tenth queued (`App::submit`) and the rest finished (stored,
//!   started and succeeded through the `Lifecycle`). At each size: `App::submit` from 1 client
//!   (`BENCH_SINGLE_SUBMITS`, 1,000) and from `BENCH_SUBMITTERS` (16) clients
//!   (`BENCH_BURST_SUBMITS`, 4,000), after `BENCH_SETTLE_MS` (2,000) of quiet; then, through
//!   the real router (`tower::ServiceExt::oneshot`, no sockets) from `BENCH_POLLERS` (16)
//!   concurrent pollers, after another settle, `BENCH_READ_ROUNDS` (5) interleaved rounds of
//!   `BENCH_POLLS` (4,000) requests each of `GET /api/v1/jobs/{id}` of the newest queued job
//!   (with its `queue_position`) and of a finished one, `GET /status` and `GET /metrics`
//!   (the median round is shown). A last table compares every figure at the smallest and
//!   largest size and marks those worse by more than 20 %.
//!
//! With `REFRAIN_BENCH_URL=http://127.0.0.1:PORT` it instead drives an already-running
//! `refrain serve` over HTTP ([`http`]): it submits `POST /generate` jobs from 16 concurrent
//! clients up to each store size, then polls `GET /status` and `GET /output/<id>.wav` of the
//! newest job. This is how `docs/benchmarks.md` compares builds of different commits.

mod fanout;
mod http;
mod poll;
mod scale;
mod sse;
mod stats;
mod submit;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use refrain_orchestrator::service::{self, InProcessNode, NodeRunner, Running};
use refrain_orchestrator::Config;

use stats::Table;

/// A `usize` knob from the environment.
pub fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The store sizes to measure at, ascending (`BENCH_STORE_SIZES`, comma-separated).
pub fn store_sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = std::env::var("BENCH_STORE_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .filter(|&n| n > 0)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// A node that loads nothing, reports its bundle loaded and takes no job until the service
/// stops: the service becomes ready and every submitted job stays queued.
fn idle_node() -> NodeRunner {
    Arc::new(|node: InProcessNode| {
        Box::pin(async move {
            node.report.loaded();
            node.cancel.cancelled().await;
        })
    })
}

async fn start_service(data_dir: PathBuf) -> Running {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        data_dir,
        bundle: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle"),
        devices: vec!["cpu".into()],
        ..Config::default()
    };
    let mut config = config;
    // No submission of the benchmark may be refused for capacity.
    config.queue.capacity = usize::MAX / 2;
    let running = service::start(config, idle_node())
        .await
        .expect("the service starts");
    while !running.app.is_ready() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    running
}

async fn in_process(table: &mut Table) -> scale::Figures {
    let dir = tempfile::tempdir().expect("temporary directory");
    let running = start_service(dir.path().join("data")).await;
    let app = running.app.clone();

    let subscribers = knob("BENCH_SUBSCRIBERS", 1000);
    let events = knob("BENCH_EVENTS", 200);
    let interval = Duration::from_millis(knob("BENCH_EVENT_INTERVAL_MS", 5) as u64);
    fanout::run(&app, subscribers, events, Some(interval), table).await;
    fanout::run(&app, subscribers, events, None, table).await;
    let streams = knob("BENCH_SSE_STREAMS", 1000);
    let sse_events = knob("BENCH_SSE_EVENTS", 50);
    let base_url = format!("http://{}", running.addr);
    sse::run(&app, &base_url, streams, sse_events, table).await;

    let router = refrain_orchestrator::api::router(app.clone());
    let figures = scale::run(&app, &router, &store_sizes(), table).await;

    running.cancel_token().cancel();
    running.wait().await.expect("the service stops cleanly");
    figures
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let build = if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    };
    let mut table = Table::default();
    match std::env::var("REFRAIN_BENCH_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let url = url.trim().trim_end_matches('/').to_string();
            println!("job core over HTTP against {url} ({build} of the client, {cores} cores)");
            runtime.block_on(http::run(&url, &mut table));
        }
        _ => {
            println!("job core, in process ({build}, {cores} cores, sled in a temp dir)");
            let figures = runtime.block_on(in_process(&mut table));
            table.print();
            figures.print();
            return;
        }
    }
    table.print();
}
