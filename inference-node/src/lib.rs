//! The DiffRhythm inference pipeline on ONNX Runtime.
//!
//! A [`pipeline::Generator`] owns the ONNX Runtime sessions of one model bundle and turns a
//! [`pipeline::GenerateRequest`] (lyrics, style, length, sampler settings) into a 44.1 kHz stereo
//! song, reporting [`protocol::ProgressEvent`]s and honouring a cancellation token between steps.
//! Each stage lives in its own module so it can be tested against the reference behaviour
//! described in `shared/reference/diffrhythm-inference.md`.

pub mod audio;
pub mod bundle;
pub mod error;
pub mod lyrics;
pub mod pipeline;
pub mod progress;
pub mod runtime;
pub mod sampler;
pub mod style;
pub mod tensor;
pub mod vae;
pub mod worker;

pub use error::InferenceError;
