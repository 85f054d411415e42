//! Tensor plumbing between host buffers and ONNX Runtime values.
//!
//! Graphs declare their float inputs as f16 (a real fp16 export) or f32 (the test bundle); the
//! pipeline keeps its state as f32 on the host and converts at this boundary, so one code path
//! runs both. [`Graph`] wraps a session with its name (for error messages) and the declared
//! element type of each input, checked once at load time against the bundle contract.

use half::f16;
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynValue, Outlet, Tensor, TensorElementType, ValueType};

use crate::error::InferenceError;

/// The float element type a graph declares for an input or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

impl Precision {
    /// Rounds `x` to what this precision can hold (identity for f32).
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 => x,
            Precision::F16 => f16::from_f32(x).to_f32(),
        }
    }
}

/// One graph of the bundle, loaded into a session.
#[derive(Debug)]
pub struct Graph {
    pub name: String,
    pub session: Session,
    /// Wall time spent inside ONNX Runtime's `run` for this graph (for overhead accounting).
    pub busy: std::time::Duration,
}

fn element(dtype: &ValueType) -> Option<TensorElementType> {
    dtype.tensor_type()
}

impl Graph {
    pub fn new(name: impl Into<String>, session: Session) -> Graph {
        Graph {
            name: name.into(),
            session,
            busy: std::time::Duration::ZERO,
        }
    }

    fn contract(&self, message: String) -> InferenceError {
        InferenceError::Contract {
            graph: self.name.clone(),
            message,
        }
    }

    /// Whether the graph has an input of this name.
    pub fn has_input(&self, name: &str) -> bool {
        self.session.inputs().iter().any(|i| i.name() == name)
    }

    /// The declared shape of an input (-1 for dynamic axes).
    pub fn input_shape(&self, name: &str) -> Option<Vec<i64>> {
        self.session
            .inputs()
            .iter()
            .find(|i| i.name() == name)
            .and_then(|i| {
                i.dtype()
                    .tensor_shape()
                    .map(|s| s.iter().copied().collect())
            })
    }

    /// The input or output called `name`, or a contract error naming it.
    fn outlet<'a>(
        &self,
        outlets: &'a [Outlet],
        kind: &str,
        name: &str,
    ) -> Result<&'a Outlet, InferenceError> {
        outlets
            .iter()
            .find(|o| o.name() == name)
            .ok_or_else(|| self.contract(format!("missing {kind} `{name}`")))
    }

    /// Checks that `name` is a float input of the given rank and returns its precision.
    pub fn float_input(&self, name: &str, rank: usize) -> Result<Precision, InferenceError> {
        self.float_of(
            name,
            self.outlet(self.session.inputs(), "input", name)?.dtype(),
            rank,
        )
    }

    /// Checks that `name` is a float output of the given rank and returns its precision.
    pub fn float_output(&self, name: &str, rank: usize) -> Result<Precision, InferenceError> {
        self.float_of(
            name,
            self.outlet(self.session.outputs(), "output", name)?.dtype(),
            rank,
        )
    }

    fn float_of(
        &self,
        name: &str,
        dtype: &ValueType,
        rank: usize,
    ) -> Result<Precision, InferenceError> {
        let p = match element(dtype) {
            Some(TensorElementType::Float32) => Precision::F32,
            Some(TensorElementType::Float16) => Precision::F16,
            other => {
                return Err(self.contract(format!(
                    "`{name}` must be float16 or float32, not {other:?}"
                )))
            }
        };
        let got = dtype.tensor_shape().map(|s| s.len()).unwrap_or(0);
        if got != rank {
            return Err(self.contract(format!("`{name}` must have rank {rank}, not {got}")));
        }
        Ok(p)
    }

    /// Checks that `name` is an int64 input of the given rank.
    pub fn int64_input(&self, name: &str, rank: usize) -> Result<(), InferenceError> {
        let outlet = self.outlet(self.session.inputs(), "input", name)?;
        let ty = element(outlet.dtype());
        let got = outlet.dtype().tensor_shape().map(|s| s.len()).unwrap_or(0);
        if ty != Some(TensorElementType::Int64) || got != rank {
            return Err(self.contract(format!("`{name}` must be int64 of rank {rank}")));
        }
        Ok(())
    }

    /// Runs the graph and returns its outputs.
    pub fn run<'s>(
        &'s mut self,
        inputs: Vec<(&'static str, SessionInputValue<'_>)>,
    ) -> Result<SessionOutputs<'s>, InferenceError> {
        let started = std::time::Instant::now();
        let out = self.session.run(inputs);
        self.busy += started.elapsed();
        out.map_err(|source| InferenceError::Onnx {
            graph: self.name.clone(),
            source,
        })
    }

    /// Runs the graph on the inputs and outputs bound in `binding`.
    pub fn run_binding<'b>(
        &'b mut self,
        binding: &'b ort::session::IoBinding,
    ) -> Result<SessionOutputs<'b>, InferenceError> {
        let started = std::time::Instant::now();
        let out = self.session.run_binding(binding);
        self.busy += started.elapsed();
        out.map_err(|source| InferenceError::Onnx {
            graph: self.name.clone(),
            source,
        })
    }

    /// Runs the graph and copies one float output out as f32 with its shape.
    pub fn run_f32(
        &mut self,
        inputs: Vec<(&'static str, SessionInputValue<'_>)>,
        output: &str,
    ) -> Result<(Vec<usize>, Vec<f32>), InferenceError> {
        let name = self.name.clone();
        let outputs = self.run(inputs)?;
        let value = outputs
            .get(output)
            .ok_or_else(|| InferenceError::Contract {
                graph: name.clone(),
                message: format!("missing output `{output}`"),
            })?;
        extract_f32(&name, value)
    }
}

/// Builds a float tensor of the given precision from f32 host data.
pub fn float_tensor(
    graph: &str,
    precision: Precision,
    shape: &[usize],
    data: &[f32],
) -> Result<DynValue, InferenceError> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let r = match precision {
        Precision::F32 => Tensor::from_array((shape, data.to_vec())).map(|t| t.into_dyn()),
        Precision::F16 => {
            let v: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
            Tensor::from_array((shape, v)).map(|t| t.into_dyn())
        }
    };
    r.map_err(InferenceError::onnx(graph))
}

/// Builds an int64 tensor.
pub fn int64_tensor(
    graph: &str,
    shape: &[usize],
    data: Vec<i64>,
) -> Result<DynValue, InferenceError> {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_array((shape, data))
        .map(|t| t.into_dyn())
        .map_err(InferenceError::onnx(graph))
}

/// Copies a float output (f16 or f32) out as f32, with its shape, rejecting NaN and infinities.
pub fn extract_f32(
    graph: &str,
    value: &DynValue,
) -> Result<(Vec<usize>, Vec<f32>), InferenceError> {
    visit_f32(graph, value, |shape, data| (shape.to_vec(), data.to_vec()))
}

fn dims(shape: &ort::value::Shape) -> Vec<usize> {
    shape.iter().map(|&d| d.max(0) as usize).collect()
}

/// Calls `f` with a float output as an f32 slice: borrowed for f32 graphs, converted for f16.
/// Rejects NaN and infinities.
pub fn visit_f32<R>(
    graph: &str,
    value: &DynValue,
    f: impl FnOnce(&[usize], &[f32]) -> R,
) -> Result<R, InferenceError> {
    visit_f32_unchecked(graph, value, |shape, data| {
        if data.iter().any(|x| !x.is_finite()) {
            return Err(InferenceError::NonFinite(graph.to_string()));
        }
        Ok(f(shape, data))
    })?
}

/// Like [`visit_f32`] without the finiteness pass, for callers that check while they copy.
pub fn visit_f32_unchecked<R>(
    graph: &str,
    value: &DynValue,
    f: impl FnOnce(&[usize], &[f32]) -> R,
) -> Result<R, InferenceError> {
    match value.dtype().tensor_type() {
        Some(TensorElementType::Float32) => {
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(InferenceError::onnx(graph))?;
            Ok(f(&dims(shape), data))
        }
        Some(TensorElementType::Float16) => {
            let (shape, data) = value
                .try_extract_tensor::<f16>()
                .map_err(InferenceError::onnx(graph))?;
            let data: Vec<f32> = data.iter().map(|x| x.to_f32()).collect();
            Ok(f(&dims(shape), &data))
        }
        other => Err(InferenceError::Contract {
            graph: graph.to_string(),
            message: format!("output must be float16 or float32, not {other:?}"),
        }),
    }
}
