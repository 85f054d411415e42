//! Refrain's service: the HTTP APIs, the durable job store (sled), the queue backends, the
//! progress board, the in-process inference workers and the background tasks that keep them
//! tidy. `service::serve` wires them together for `refrain serve`.
//!
//! Durability rule, everywhere: a state change is a compare-and-swap on the job record followed
//! by a flush, and only then is anyone told (HTTP reply, queue ack).

pub mod admission;
pub mod api;
pub mod app;
pub mod blobs;
pub mod config;
pub mod distributed;
pub mod error;
pub mod ids;
pub mod jobs;
pub mod link;
pub mod metrics;
pub mod outbound;
pub mod outputs;
pub mod progress;
pub mod queue;
pub mod retention;
pub mod schedules;
pub mod service;
pub mod store;
pub mod uploads;
pub mod webhooks;

pub use config::Config;
pub use error::OrchestratorError;
