//! The Mandarin polyphone BERT (`poly_bert_model.onnx` of the bundle's Mandarin data) on ONNX
//! Runtime, plugged into `refrain_model`'s Mandarin G2P, which links no runtime itself.
//!
//! The graph takes `input_ids [1, L+1] i32` (`[CLS]` then one id per character) and gives
//! `outputs [1, L, C] f32`; the reference takes the arg-max class at the polyphonic character's
//! position (numpy's arg-max: the first maximum), as [`OrtPolyphone`] does. The G2P runs it at
//! most once per line and caches lines, so its cost (see `benches/polyphone.rs`) is paid once
//! per distinct Chinese run.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::session::SessionInputValue;
use ort::value::Tensor;
use refrain_model::bundle::Bundle;
use refrain_model::lyrics::g2p::mandarin::PolyphoneModel;
use refrain_model::lyrics::g2p::LineEncoder;
use refrain_model::track;

use crate::error::InferenceError;
use crate::runtime::Runtime;
use crate::tensor::Graph;

/// The polyphone classifier in one ONNX Runtime session.
#[derive(Debug)]
pub struct OrtPolyphone {
    graph: Mutex<Graph>,
}

impl OrtPolyphone {
    /// Loads the graph on the runtime's device.
    pub fn load(runtime: &Runtime, file: &Path) -> Result<OrtPolyphone, InferenceError> {
        Ok(OrtPolyphone {
            graph: Mutex::new(Graph::new("polyphone bert", runtime.session(file)?)),
        })
    }

    fn run(&self, input_ids: &[i32]) -> Result<Vec<usize>, InferenceError> {
        let mut graph = self.graph.lock().unwrap_or_else(|p| p.into_inner());
        let name = graph.name.clone();
        let input = Tensor::from_array((vec![1i64, input_ids.len() as i64], input_ids.to_vec()))
            .map_err(InferenceError::onnx(&name))?;
        let outputs = graph.run(vec![("input_ids", SessionInputValue::from(input))])?;
        let value = outputs
            .get("outputs")
            .ok_or_else(|| InferenceError::Contract {
                graph: name.clone(),
                message: "missing output `outputs`".into(),
            })?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(InferenceError::onnx(&name))?;
        let classes = match shape.as_ref() {
            [1, _, c] if *c > 0 => *c as usize,
            other => {
                return Err(InferenceError::Contract {
                    graph: name,
                    message: format!("`outputs` must be [1, L, C], not {other:?}"),
                })
            }
        };
        Ok(data
            .chunks(classes)
            .map(|row| {
                let mut best = 0;
                for (i, &x) in row.iter().enumerate() {
                    if x > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect())
    }
}

impl PolyphoneModel for OrtPolyphone {
    fn classify(&self, input_ids: &[i32]) -> Result<Vec<usize>, String> {
        self.run(input_ids).map_err(|e| e.to_string())
    }
}

/// The line encoder of a bundle with its polyphone model loaded on `runtime` when the Mandarin
/// data has one; `vocab` and `mandarin` override the bundle's vocabulary and data directory.
pub fn line_encoder(
    bundle: &Bundle,
    runtime: &Runtime,
    vocab: Option<&Path>,
    mandarin: Option<&Path>,
) -> Result<LineEncoder, InferenceError> {
    let model: Option<Arc<dyn PolyphoneModel>> = match track::polyphone_model_file(bundle, mandarin)
    {
        Some(file) => Some(Arc::new(OrtPolyphone::load(runtime, &file)?)),
        None => None,
    };
    Ok(track::line_encoder_with(bundle, vocab, mandarin, model)?)
}
