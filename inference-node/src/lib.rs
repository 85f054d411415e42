//! The DiffRhythm inference pipeline on ONNX Runtime, and the inference node that runs it.
//!
//! A [`pipeline::Generator`] owns the ONNX Runtime sessions of one model bundle and turns a
//! [`pipeline::GenerateRequest`] (lyrics, style, length, sampler settings) into a 44.1 kHz stereo
//! song, reporting [`protocol::ProgressEvent`]s and honouring a cancellation token between steps.
//! Each stage lives in its own module so it can be tested against the reference behaviour
//! of the DiffRhythm code (see the README's deviations section). The model contract that needs no
//! runtime (bundle manifest, lyrics, audio I/O, request checks) lives in `refrain_model` and is
//! re-exported here under its old paths ([`bundle`], [`lyrics`], [`audio`]).
//!
//! [`worker::run`] is a node's job loop on any [`protocol::node::NodeLink`]; [`nats`] is the
//! distributed node (`refrain node`) on NATS JetStream.

pub use refrain_model::{audio, bundle, lyrics};

pub mod error;
pub mod memory;
pub mod nats;
pub mod pipeline;
pub mod polyphone;
pub mod prepare;
pub mod progress;
pub mod runtime;
pub mod sample_files;
pub mod sampler;
pub mod style;
pub mod tensor;
pub mod vae;
pub mod worker;

pub use error::InferenceError;
