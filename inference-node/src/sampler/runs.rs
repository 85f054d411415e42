//! The DiT runs of one guided velocity: how the 2B rows of an evaluation (B conditional
//! rows, one per variant, then B unconditional ones) are split into DiT calls ([`Layout`]),
//! the input tensors each call reuses between steps, and the CFG combination of the outputs.
//!
//! Two ways to feed the graph, with the same numbers:
//! - **plain** `Session::run` with host tensors kept between steps (`x` and `time` written in
//!   place, the rest built once);
//! - **IO binding** (`Dit::io`): per call an `IoBinding` that holds the inputs that never change
//!   (cond, text, style, start_time, duration; on CUDA uploaded to the device once, when bound)
//!   and `v` bound to a buffer allocated once (pinned host memory on CUDA, written by one
//!   device-to-host copy per call). Per step only `x` and `time` are bound again (on CUDA: one
//!   host-to-device copy each).
//!
//! What crosses between host and device per step with IO binding on CUDA here: `x` (rows × N ×
//! 64 values, from pinned memory) and `time` up, `v` (rows × N × 64) down, per DiT call; the
//! CFG combination and the Euler update run on the host. That is the path of the separate and
//! single-row layouts and of the midpoint solver; with batched CFG and Euler the sampler runs
//! [`super::device`] instead, where the update is a graph and the latent stays on the device.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, SessionInputValue};
use ort::value::{DynTensor, DynValue, TensorElementType};

use super::{write_floats, CfgMode, Dit, SampleInputs, LATENT_DIM, STYLE_DIM};
use crate::error::InferenceError;
use crate::runtime::Device;
use crate::tensor::{float_tensor, int64_tensor, visit_f32_unchecked, Precision};

/// How the 2B rows of one guided evaluation are split into DiT calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One call of 2B rows (both branches as one batch).
    Batched,
    /// Two calls of B rows: the conditional branch, then the unconditional one.
    Separate,
    /// 2B calls of one row: each variant and branch alone.
    Single,
}

impl Layout {
    /// The layout a [`CfgMode`] starts with.
    pub fn initial(mode: CfgMode, dynamic_batch: bool) -> Layout {
        match mode {
            CfgMode::Auto if dynamic_batch => Layout::Batched,
            CfgMode::Auto | CfgMode::Separate => Layout::Separate,
            CfgMode::Batched => Layout::Batched,
            CfgMode::Single => Layout::Single,
        }
    }

    /// Rows per call with `b` variants.
    pub fn rows(self, b: usize) -> usize {
        match self {
            Layout::Batched => 2 * b,
            Layout::Separate => b,
            Layout::Single => 1,
        }
    }

    /// The next layout with fewer rows per call, if any (what an out-of-memory retries with).
    pub fn smaller(self, b: usize) -> Option<Layout> {
        match self {
            Layout::Batched => Some(Layout::Separate),
            Layout::Separate if b > 1 => Some(Layout::Single),
            Layout::Separate | Layout::Single => None,
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Batched => "batched (both CFG branches in one call)",
            Layout::Separate => "separate (one call per CFG branch)",
            Layout::Single => "single (one call per variant and branch)",
        })
    }
}

/// `x` and `time` of every call with the same first variant and row count.
struct Moving {
    first_variant: usize,
    rows: usize,
    x: DynValue,
    time: DynValue,
}

/// One DiT call: its rows and its inputs that never change.
struct Call {
    first: usize,
    rows: usize,
    moving: usize,
    fixed: Vec<(&'static str, DynValue)>,
    binding: Option<IoBinding>,
}

/// The calls of one guided evaluation, reused for every step of one sampler run.
pub(super) struct Runs {
    b: usize,
    n: usize,
    moving: Vec<Moving>,
    calls: Vec<Call>,
    /// The conditional rows of calls that do not also hold their unconditional rows.
    vc: Vec<f32>,
}

fn repeat<T: Clone>(v: &[T], times: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len() * times);
    for _ in 0..times {
        out.extend_from_slice(v);
    }
    out
}

pub(super) fn element(p: Precision) -> TensorElementType {
    match p {
        Precision::F32 => TensorElementType::Float32,
        Precision::F16 => TensorElementType::Float16,
    }
}

/// Host allocators of the IO-binding path: inputs written by the host and outputs read by it
/// (pinned memory on CUDA, so the copies are direct DMA).
pub(super) fn host_allocators(
    dit: &Dit,
    device: Device,
) -> Result<(Allocator, Allocator), ort::Error> {
    match device {
        Device::Cpu => Ok((Allocator::default(), Allocator::default())),
        Device::Cuda(_) | Device::TensorRt(_) => {
            let pinned = |kind| {
                MemoryInfo::new(
                    AllocationDevice::CUDA_PINNED,
                    0,
                    AllocatorType::Device,
                    kind,
                )
                .and_then(|info| Allocator::new(&dit.graph.session, info))
            };
            Ok((
                pinned(MemoryType::CPUInput)?,
                pinned(MemoryType::CPUOutput)?,
            ))
        }
    }
}

/// The DiT inputs of rows `first..first + rows` of one guided evaluation that never change
/// between steps: row r is variant r mod B, conditional (the song's cond, text and style) when
/// r < B, unconditional (zeros, zero tokens, the negative style) otherwise.
pub(super) fn fixed_inputs(
    dit: &Dit,
    s: &SampleInputs,
    first: usize,
    rows: usize,
) -> Result<Vec<(&'static str, DynValue)>, InferenceError> {
    let (n, b, p) = (s.frames, s.variants, dit.precision);
    let g = dit.graph.name.clone();
    let zeros = vec![0f32; n * LATENT_DIM];
    let (mut cond, mut text, mut style) = (Vec::new(), Vec::new(), Vec::new());
    for r in first..first + rows {
        if r < b {
            cond.extend_from_slice(&s.cond);
            text.extend_from_slice(&s.text);
            style.extend_from_slice(&s.style);
        } else {
            cond.extend_from_slice(&zeros);
            text.extend(std::iter::repeat_n(0, n));
            style.extend_from_slice(&s.negative);
        }
    }
    let mut fixed = vec![
        ("cond", float_tensor(&g, p, &[rows, n, LATENT_DIM], &cond)?),
        ("text", int64_tensor(&g, &[rows, n], text)?),
        ("style", float_tensor(&g, p, &[rows, STYLE_DIM], &style)?),
        (
            "start_time",
            float_tensor(&g, p, &[rows], &vec![0.0; rows])?,
        ),
    ];
    if dit.has_duration {
        fixed.push((
            "duration",
            float_tensor(&g, p, &[rows], &repeat(&[s.duration], rows))?,
        ));
    }
    Ok(fixed)
}

impl Runs {
    pub(super) fn new(dit: &Dit, s: &SampleInputs, layout: Layout) -> Result<Runs, InferenceError> {
        let (n, b, p) = (s.frames, s.variants, dit.precision);
        let g = dit.graph.name.clone();
        let rows = layout.rows(b);
        let allocators = match dit.io {
            Some(device) => Some(host_allocators(dit, device).map_err(InferenceError::onnx(&g))?),
            None => None,
        };
        let mut moving: Vec<Moving> = Vec::new();
        let mut calls = Vec::new();
        for first in (0..2 * b).step_by(rows) {
            let key = (first % b, rows);
            let index = match moving.iter().position(|m| (m.first_variant, m.rows) == key) {
                Some(i) => i,
                None => {
                    let (x, time) = match &allocators {
                        Some((input, _)) => {
                            let new = |shape: &[usize]| {
                                DynTensor::new(input, element(p), shape.to_vec())
                                    .map(|t| t.into_dyn())
                                    .map_err(InferenceError::onnx(&g))
                            };
                            (new(&[rows, n, LATENT_DIM])?, new(&[rows])?)
                        }
                        None => (
                            float_tensor(
                                &g,
                                p,
                                &[rows, n, LATENT_DIM],
                                &vec![0.0; rows * n * LATENT_DIM],
                            )?,
                            float_tensor(&g, p, &[rows], &vec![0.0; rows])?,
                        ),
                    };
                    moving.push(Moving {
                        first_variant: key.0,
                        rows,
                        x,
                        time,
                    });
                    moving.len() - 1
                }
            };
            let fixed = fixed_inputs(dit, s, first, rows)?;
            let binding = match &allocators {
                Some((_, output)) => {
                    let bind = || -> Result<IoBinding, ort::Error> {
                        let mut binding = dit.graph.session.create_binding()?;
                        for (name, value) in &fixed {
                            binding.bind_input(*name, value)?;
                        }
                        let v = DynTensor::new(output, element(p), vec![rows, n, LATENT_DIM])?;
                        binding.bind_output("v", v)?;
                        Ok(binding)
                    };
                    Some(bind().map_err(InferenceError::onnx(&g))?)
                }
                None => None,
            };
            calls.push(Call {
                first,
                rows,
                moving: index,
                fixed,
                binding,
            });
        }
        let vc = if calls.len() > 1 {
            vec![0.0; b * n * LATENT_DIM]
        } else {
            Vec::new()
        };
        Ok(Runs {
            b,
            n,
            moving,
            calls,
            vc,
        })
    }

    /// Evaluates the guided velocity `v_c + (v_c − v_u)·cfg` at `(x, t)` into `out`.
    pub(super) fn velocity(
        &mut self,
        dit: &mut Dit,
        x: &[f32],
        t: f32,
        cfg: f32,
        out: &mut [f32],
    ) -> Result<(), InferenceError> {
        let (b, n, p) = (self.b, self.n, dit.precision);
        let name = dit.graph.name.clone();
        let one = n * LATENT_DIM;
        for m in &mut self.moving {
            for i in 0..m.rows {
                let v = (m.first_variant + i) % b;
                write_floats(&name, &mut m.x, i * one, &x[v * one..(v + 1) * one])?;
            }
            write_floats(&name, &mut m.time, 0, &vec![t; m.rows])?;
        }
        let mut finite = true;
        let mut combine = |c: &[f32], u: &[f32], out: &mut [f32]| {
            let mut ok = true;
            match p {
                Precision::F32 => {
                    for ((o, &c), &u) in out.iter_mut().zip(c).zip(u) {
                        *o = c + (c - u) * cfg;
                        ok &= o.is_finite();
                    }
                }
                Precision::F16 => {
                    for ((o, &c), &u) in out.iter_mut().zip(c).zip(u) {
                        let d = p.round(c - u);
                        *o = p.round(c + p.round(d * cfg));
                        ok &= o.is_finite();
                    }
                }
            }
            finite &= ok;
        };
        for call in &mut self.calls {
            let m = &self.moving[call.moving];
            let (first, rows) = (call.first, call.rows);
            let vc = &mut self.vc;
            // The rows of this call's output: keep conditional ones whose unconditional
            // counterpart comes in a later call, combine unconditional ones.
            let mut take = |v: &[f32]| {
                for i in 0..rows {
                    let r = first + i;
                    let row = &v[i * one..(i + 1) * one];
                    if r < b {
                        if r + b >= first + rows {
                            vc[r * one..(r + 1) * one].copy_from_slice(row);
                        }
                    } else {
                        let var = r - b;
                        let dst = &mut out[var * one..(var + 1) * one];
                        if var >= first {
                            let i = var - first;
                            combine(&v[i * one..(i + 1) * one], row, dst);
                        } else {
                            combine(&vc[var * one..(var + 1) * one], row, dst);
                        }
                    }
                }
            };
            let outputs = match &mut call.binding {
                Some(binding) => {
                    let bind = |binding: &mut IoBinding| -> Result<(), ort::Error> {
                        binding.bind_input("x", &m.x)?;
                        binding.bind_input("time", &m.time)
                    };
                    bind(binding).map_err(InferenceError::onnx(&name))?;
                    dit.graph.run_binding(binding)?
                }
                None => {
                    let mut inputs: Vec<(&'static str, SessionInputValue<'_>)> =
                        vec![("x", (&m.x).into()), ("time", (&m.time).into())];
                    inputs.extend(call.fixed.iter().map(|(k, v)| (*k, v.into())));
                    dit.graph.run(inputs)?
                }
            };
            let v = outputs.get("v").ok_or_else(|| InferenceError::Contract {
                graph: name.clone(),
                message: "missing output `v`".into(),
            })?;
            visit_f32_unchecked(&name, v, |shape, data| {
                if shape != [rows, n, LATENT_DIM] {
                    return Err(InferenceError::Contract {
                        graph: name.clone(),
                        message: format!(
                            "`v` has shape {shape:?}, expected [{rows}, {n}, {LATENT_DIM}]"
                        ),
                    });
                }
                take(data);
                Ok(())
            })??;
        }
        if finite {
            Ok(())
        } else {
            Err(InferenceError::NonFinite(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_shrink_to_one_row() {
        assert_eq!(Layout::initial(CfgMode::Auto, true), Layout::Batched);
        assert_eq!(Layout::initial(CfgMode::Auto, false), Layout::Separate);
        assert_eq!(Layout::Batched.smaller(1), Some(Layout::Separate));
        assert_eq!(Layout::Separate.smaller(1), None);
        assert_eq!(Layout::Separate.smaller(3), Some(Layout::Single));
        assert_eq!(Layout::Single.smaller(3), None);
        assert_eq!(
            [Layout::Batched, Layout::Separate, Layout::Single].map(|l| l.rows(3)),
            [6, 3, 1]
        );
    }
}
