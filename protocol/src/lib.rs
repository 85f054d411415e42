//! Types every part of Refrain shares. This crate does no I/O: it is the vocabulary that the
//! orchestrator, inference nodes, bots and command line speak to each other.

pub mod progress;

pub use progress::{ProgressEvent, Stage};
