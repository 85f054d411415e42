//! Types every part of Refrain shares. This crate does no I/O: it is the vocabulary that the
//! orchestrator, inference nodes, bots and command line speak to each other.

pub mod job;
pub mod progress;

pub use job::{
    EditSpec, JobId, JobRecord, JobResult, JobSpec, JobState, SongRef, Source, StyleSpec,
};
pub use progress::{ProgressEvent, Stage};
