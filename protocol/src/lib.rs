//! Types every part of Refrain shares. This crate does no I/O: it is the vocabulary that the
//! orchestrator, inference nodes, bots and command line speak to each other.

pub mod bots;
pub mod event;
pub mod inference;
pub mod job;
pub mod node;
pub mod progress;

pub use event::{JobEvent, JobEventKind};
pub use inference::CfgMode;
pub use job::{
    AudioFormat, EditSpec, InitSpec, JobId, JobRecord, JobResult, JobSpec, JobState, Owner,
    Priority, ResultFile, SongRef, Source, StyleSpec,
};
pub use progress::{ProgressEvent, Stage};
