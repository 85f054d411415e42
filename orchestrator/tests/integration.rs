//! The orchestrator's integration tests, one binary: each file of `tests/` is a module here,
//! with the shared helpers (`support`, `riffusion_common`, `task_common`) compiled once.
//!
//! Why one binary: every test binary links the whole service and compiles its own copy of
//! the generic code it uses (axum, tokio, serde, reqwest); 23 of them took most of CI's build
//! time. Run one file's tests with a filter, e.g.
//! `cargo test -p refrain-orchestrator --test integration admission::`.

mod riffusion_common;
mod support;
mod task_common;

mod admission;
mod api;
mod api_results;
mod api_v1;
mod api_v1_init;
mod api_v1_limits;
mod api_v1_style_audio;
mod download_links;
mod errors;
mod fair_share;
mod fuzz_inputs;
mod nodes;
mod on_behalf_of;
mod openapi;
mod riffusion_api;
mod riffusion_requests;
mod riffusion_transforms;
mod schedules;
mod schedules_api;
mod task_api;
mod task_api_webhooks;
mod upload_requests;
