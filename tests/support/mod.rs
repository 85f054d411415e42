//! Harness of the end-to-end tests and benchmarks of the `refrain` binary. Every test starts
//! the system through one builder, [`TestApp`] (`TestApp::embedded()`, `TestApp::nats()`), so
//! the wiring of processes, ports, configuration and data directories lives in one place;
//! jobs are followed through their event stream ([`EventStream`]), not through logs.
//!
//! The modules, by concern:
//!
//! * [`app`]: the [`TestApp`] builder and the running system (server, nodes, nats-server);
//! * [`server`]: `refrain serve` as a child process, restartable on its data directory;
//! * [`node`]: `refrain node` processes of the distributed deployment;
//! * [`nats`]: a private nats-server with JetStream on a random port;
//! * [`inprocess`]: the orchestrator in the test process on a [`NatsFabric`], for jobs with
//!   owners and priorities;
//! * [`process`]: child processes, their logs and signals;
//! * [`http`]: a blocking client of the HTTP APIs (submit, poll, status);
//! * [`events`]: a client of a job's Server-Sent Events (`GET /api/v1/jobs/{id}/events`);
//! * [`logs`]: what a node's log says it ran (for what no job's events tell: which node, one
//!   job at a time);
//! * [`spec`]: the seed-000 DiffRhythm API's request and the checks of its answers;
//! * [`audio`]: WAV inputs and checks, and reference runs of `refrain generate`;
//! * [`songs`]: song jobs with known results (the [`Oracle`]) and what their events say;
//! * [`prereq`]: the external pieces (ONNX Runtime, nats-server) and the test directory.

#![allow(dead_code, unused_imports)]

pub mod app;
pub mod audio;
pub mod browser;
pub mod events;
pub mod http;
pub mod inprocess;
pub mod logs;
pub mod nats;
pub mod node;
pub mod prereq;
pub mod process;
pub mod server;
pub mod songs;
pub mod spec;

pub use app::{NatsFabric, TestApp, TestAppBuilder};
pub use audio::{assert_song_wav, generate_reference, latent_frames, sine_wav};
pub use events::{EventStream, JobEvent};
pub use http::{local_client, rejected_at_run_time_form, wait_json, Api, Done};
pub use inprocess::Orchestrator;
pub use logs::{node_events, one_at_a_time, NodeLogEvent};
pub use nats::NatsServer;
pub use node::Node;
pub use prereq::{nats_server_binary, ort_available, refusing_port, workspace, TestDir};
pub use process::{read_log, Proc};
pub use server::Server;
pub use songs::{song_request, JobSummary, Oracle, SongJob};
