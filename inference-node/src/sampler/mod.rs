//! The CFM sampler: the reference `CFM.sample` (`model/cfm.py`) with torchdiffeq's fixed-grid
//! solvers, on a DiT graph of the bundle.
//!
//! Noise at t = 0, data at t = 1. The time grid is `linspace(0, 1, steps)` (32 points, so 31
//! Euler steps by default), optionally sway-warped. Each step evaluates the DiT on the
//! conditional branch (user style, lyric tokens, edit reference) and the unconditional branch
//! (negative style, zero tokens, zero reference) and combines `v = v_c + (v_c − v_u) · cfg`.
//! The two branches run as one batch of 2B when the graph's batch axis allows it
//! ([`CfgMode::Auto`]), which the reference does not do but which gives the same numbers
//! ([`runs`] splits the rows into DiT calls and holds their tensors).
//!
//! **Out of memory.** When ONNX Runtime cannot allocate memory for a DiT call
//! ([`InferenceError::is_out_of_memory`]), the sampler starts again from its start noise with
//! fewer rows per call ([`Layout::smaller`]: the two branches separately, then one variant and
//! branch at a time), logs it at warn level and keeps the smaller layout for the rest of the
//! run. Starting again makes the result that of an uninterrupted run with the smaller layout,
//! bit for bit (a batch of another size may round differently on a GPU); the memory need is the
//! same at every step, so the failure comes at the first step and little is redone. Steps
//! already reported are not reported again.
//!
//! **Init (SDEdit), Refrain's addition.** The reference always starts from pure noise. With
//! [`SampleInputs::init`] the sampler starts instead from a song's latents re-noised onto the
//! flow's straight path, `x_t = (1 − t)·noise + t·latent`, at the grid point `t_k0` where a
//! noise strength `s` puts it (the first point at or after `1 − s`, [`start_step`]), and runs
//! only the steps after it: `s = 1` is a fresh generation (the same noise, the same steps),
//! `s = 0` runs no step and gives the latents back.
//!
//! **On the device.** On a GPU with IO binding and batched CFG (Euler), the CFG combination and
//! the Euler update run as a graph of their own next to the DiT ([`step`], [`device`]), so the
//! latent stays on the GPU between steps; the numbers are the host update's (bit for bit, as
//! the tests check on the CPU with [`Dit::use_update_graph`]).
//!
//! Precision: the reference runs the whole sampler in fp16 (the model is `.half()`), so every
//! elementwise operation rounds to fp16. When the DiT graph declares f16 inputs, this module
//! rounds after each operation in the same order (`v_c − v_u`, `· cfg`, `v_c + …`, `dt · v`,
//! `x + …`) and builds the grid in fp16 as torch does; with an f32 graph everything stays f32.

use ort::value::DynValue;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::bundle::Solver;
use crate::error::InferenceError;
use crate::runtime::{Device, Runtime};
use crate::tensor::{Graph, Precision};

mod device;
mod runs;
pub mod step;

pub use runs::Layout;

/// Latent channels (the VAE's latent dimension).
pub const LATENT_DIM: usize = 64;
/// Style embedding size (MuQ-MuLan).
pub const STYLE_DIM: usize = 512;

pub use protocol::CfgMode;

/// Sampler settings of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerSettings {
    /// Time-grid points (the reference's `steps`); `steps - 1` solver steps.
    pub steps: u32,
    pub cfg_strength: f32,
    pub solver: Solver,
    pub sway_coef: Option<f32>,
    pub cfg_mode: CfgMode,
}

/// A DiT graph with the facts read from its signature.
#[derive(Debug)]
pub struct Dit {
    pub graph: Graph,
    /// Precision of the float inputs (`x`, `cond`, `time`, `style`, …) and of `v`.
    pub precision: Precision,
    pub has_duration: bool,
    /// Whether the batch axis of `x` is dynamic (so 2B batching is possible).
    pub dynamic_batch: bool,
    /// Run through IO binding on this device (`Runtime::io_binding`); `None`: plain runs.
    pub io: Option<Device>,
    /// The CFG/Euler update as a graph ([`step`]) on the DiT's device: with [`Dit::io`] and
    /// batched CFG the latent then stays on the device between steps ([`device`]).
    pub step: Option<Graph>,
    /// The layout the last sampler run finished with (smaller than its start after an
    /// out-of-memory retry).
    pub last_layout: Option<Layout>,
}

impl Dit {
    /// Checks a DiT session against the contract: `x, cond [B,N,64]`, `text [B,N] i64`,
    /// `time, start_time [B]`, `style [B,512]`, optional `duration [B]`; output `v [B,N,64]`.
    pub fn new(graph: Graph, expect_duration: bool) -> Result<Dit, InferenceError> {
        let precision = graph.float_input("x", 3)?;
        for (name, rank) in [("cond", 3), ("time", 1), ("style", 2), ("start_time", 1)] {
            if graph.float_input(name, rank)? != precision {
                return Err(InferenceError::Contract {
                    graph: graph.name.clone(),
                    message: format!("`{name}` must have the same float type as `x`"),
                });
            }
        }
        graph.int64_input("text", 2)?;
        graph.float_output("v", 3)?;
        let has_duration = graph.has_input("duration");
        if has_duration != expect_duration {
            return Err(InferenceError::Contract {
                graph: graph.name.clone(),
                message: format!(
                    "bundle.toml says duration_input = {expect_duration}, the graph {} a `duration` input",
                    if has_duration { "has" } else { "has no" }
                ),
            });
        }
        if has_duration {
            graph.float_input("duration", 1)?;
        }
        let dynamic_batch = graph
            .input_shape("x")
            .is_some_and(|s| s.first() == Some(&-1));
        Ok(Dit {
            graph,
            precision,
            has_duration,
            dynamic_batch,
            io: None,
            step: None,
            last_layout: None,
        })
    }
}

impl Dit {
    /// Runs this DiT through IO binding when `runtime` says so ([`Runtime::io_binding`]), and on
    /// a GPU with the update graph ([`step`]) when the graph can batch both CFG branches, so
    /// that the latent stays on the device between steps. On the CPU there is nothing to keep
    /// on a device and the host update, one fused pass, is faster (2.8 against 5.6 ms a step
    /// on the test bundle's full DiT at 285 s): [`Dit::use_update_graph`] forces it there.
    pub fn bind_io(&mut self, runtime: &Runtime) -> Result<(), InferenceError> {
        self.io = runtime.io_binding();
        self.step = None;
        if self.io.is_some_and(|d| d.gpu().is_some()) {
            self.use_update_graph(runtime)?;
        }
        Ok(())
    }

    /// Uses the update graph whenever IO binding is on and CFG is batched, on any device
    /// (what the tests use to check its numbers on the CPU).
    pub fn use_update_graph(&mut self, runtime: &Runtime) -> Result<(), InferenceError> {
        if self.io.is_some() && self.dynamic_batch {
            self.step = Some(step::session(runtime, self.precision)?);
        }
        Ok(())
    }
}

/// Everything the sampler needs for one song (all variants share it).
#[derive(Debug, Clone)]
pub struct SampleInputs {
    /// Frames N.
    pub frames: usize,
    /// Variants B (`batch_infer_num`).
    pub variants: usize,
    /// The edit reference with regenerated spans zeroed (`step_cond`), `[N*64]`; zeros otherwise.
    pub cond: Vec<f32>,
    /// Frame-aligned lyric tokens `[N]`.
    pub text: Vec<i64>,
    pub style: Vec<f32>,
    pub negative: Vec<f32>,
    /// `N / max_frames` (full model only).
    pub duration: f32,
    /// Start noise `[B*N*64]`.
    pub noise: Vec<f32>,
    /// Start from these latents re-noised instead of from pure noise ([`Init`]).
    pub init: Option<Init>,
}

/// The start of an init (SDEdit) run: a song's latents `[N*64]` (the same for every variant)
/// and the time-grid point the sampler starts at ([`start_step`]).
#[derive(Debug, Clone)]
pub struct Init {
    pub latent: Vec<f32>,
    /// Index into the time grid; the steps after it run.
    pub start: usize,
}

/// The time-grid point an init run with noise strength `strength` (0–1) starts at: the first
/// point at or after `t0 = 1 − strength` (so never more noise than asked; the tolerance
/// absorbs the rounding of `1 − strength` and of a warped grid's last point).
pub fn start_step(grid: &[f32], strength: f32) -> usize {
    let t0 = 1.0 - strength.clamp(0.0, 1.0);
    grid.iter()
        .position(|&t| t >= t0 - 1e-6)
        .unwrap_or(grid.len().saturating_sub(1))
}

/// `(1 − t)·noise + t·latent` for every variant, rounded like the rest of the sampler. At
/// `t = 0` this is the noise itself, bit for bit.
fn renoise(noise: &[f32], latent: &[f32], t: f32, p: Precision) -> Vec<f32> {
    if t == 0.0 {
        return noise.to_vec();
    }
    let keep = p.round(1.0 - t);
    noise
        .chunks(latent.len())
        .flat_map(|variant| {
            variant
                .iter()
                .zip(latent)
                .map(move |(&z, &l)| p.round(p.round(keep * z) + p.round(t * p.round(l))))
        })
        .collect()
}

/// Where a sampler run starts: the grid index and the latents there, the noise itself or, for
/// an init run, the song re-noised at its start point ([`renoise`]).
fn start_latent(inputs: &SampleInputs, grid: &[f32], p: Precision) -> (usize, Vec<f32>) {
    match &inputs.init {
        None => (0, inputs.noise.clone()),
        Some(init) => {
            let start = init.start.min(grid.len() - 1);
            (start, renoise(&inputs.noise, &init.latent, grid[start], p))
        }
    }
}

/// The time grid: torch's `linspace(0, 1, steps)` (computed in f32 from both ends, as the
/// kernel does), then optional sway warping, rounded to the graph precision.
pub fn time_grid(steps: u32, sway: Option<f32>, p: Precision) -> Vec<f32> {
    let n = steps as usize;
    let step = 1.0f32 / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            let t = if i < half {
                step * i as f32
            } else {
                1.0 - step * (n - 1 - i) as f32
            };
            let t = p.round(t);
            match sway {
                None => t,
                Some(s) => {
                    // t + s·(cos(π/2·t) − 1 + t), each operation rounded like torch fp16.
                    let c = p.round(p.round(std::f32::consts::FRAC_PI_2 * t).cos());
                    let inner = p.round(p.round(c - 1.0) + t);
                    p.round(t + p.round(s * inner))
                }
            }
        })
        .collect()
}

/// Standard-normal noise `[B, N, 64]` from a seed: one draw per variant, in order, rounded to
/// the graph precision. Same seed, same noise, on every platform.
pub fn noise(seed: u64, variants: usize, frames: usize, p: Precision) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..variants * frames * LATENT_DIM)
        .map(|_| p.round(StandardNormal.sample(&mut rng)))
        .collect()
}

/// Writes f32 host values into a float tensor (f32 or f16) from element `offset` on.
fn write_floats(
    graph: &str,
    value: &mut DynValue,
    offset: usize,
    data: &[f32],
) -> Result<(), InferenceError> {
    match value.dtype().tensor_type() {
        Some(ort::value::TensorElementType::Float16) => {
            let (_, dst) = value
                .try_extract_tensor_mut::<half::f16>()
                .map_err(InferenceError::onnx(graph))?;
            for (d, &x) in dst[offset..offset + data.len()].iter_mut().zip(data) {
                *d = half::f16::from_f32(x);
            }
        }
        _ => {
            let (_, dst) = value
                .try_extract_tensor_mut::<f32>()
                .map_err(InferenceError::onnx(graph))?;
            dst[offset..offset + data.len()].copy_from_slice(data);
        }
    }
    Ok(())
}

/// Runs the sampler and returns the final latents `[B, N, 64]` (before the edit paste-back).
/// `on_step(k, total)` is called after each solver step; returning an error (e.g. cancellation)
/// stops the sampler.
pub fn sample(
    dit: &mut Dit,
    inputs: &SampleInputs,
    settings: &SamplerSettings,
    on_step: impl FnMut(u32, u32) -> Result<(), InferenceError>,
) -> Result<Vec<f32>, InferenceError> {
    if settings.steps < 2 {
        return Err(InferenceError::InvalidRequest(
            "steps must be at least 2".into(),
        ));
    }
    let grid = time_grid(settings.steps, settings.sway_coef, dit.precision);
    sample_on_grid(dit, inputs, settings, &grid, on_step)
}

/// [`sample`] on a given time grid (at least two non-decreasing points, rounded to the graph's
/// precision here) instead of the one `settings.steps` and `settings.sway_coef` make: for
/// parity checks against another implementation's grid (`refrain sample --inputs` with
/// `t_grid.npy`).
pub fn sample_on_grid(
    dit: &mut Dit,
    inputs: &SampleInputs,
    settings: &SamplerSettings,
    grid: &[f32],
    mut on_step: impl FnMut(u32, u32) -> Result<(), InferenceError>,
) -> Result<Vec<f32>, InferenceError> {
    let (n, b, p) = (inputs.frames, inputs.variants, dit.precision);
    let len = b * n * LATENT_DIM;
    for (what, got, want) in [
        ("cond", inputs.cond.len(), n * LATENT_DIM),
        ("text", inputs.text.len(), n),
        ("style", inputs.style.len(), STYLE_DIM),
        ("negative style", inputs.negative.len(), STYLE_DIM),
        ("noise", inputs.noise.len(), len),
        (
            "init latent",
            inputs
                .init
                .as_ref()
                .map_or(n * LATENT_DIM, |i| i.latent.len()),
            n * LATENT_DIM,
        ),
    ] {
        if got != want {
            return Err(InferenceError::InvalidRequest(format!(
                "sampler input {what} has {got} values, expected {want}"
            )));
        }
    }
    if grid.len() < 2 || grid.iter().any(|t| !t.is_finite()) || grid.windows(2).any(|w| w[1] < w[0])
    {
        return Err(InferenceError::InvalidRequest(format!(
            "the time grid must have at least two finite, non-decreasing points, got {grid:?}"
        )));
    }
    let grid: Vec<f32> = grid.iter().map(|&t| p.round(t)).collect();
    let mut layout = Layout::initial(settings.cfg_mode, dit.dynamic_batch);
    let mut reported = 0;
    loop {
        let mut report = |k: u32, total: u32| {
            if k > reported {
                reported = k;
                on_step(k, total)
            } else {
                Ok(())
            }
        };
        match run(dit, inputs, settings, &grid, layout, &mut report) {
            Err(e) if e.is_out_of_memory() => {
                let Some(smaller) = layout.smaller(b) else {
                    return Err(e);
                };
                tracing::warn!(
                    graph = %dit.graph.name,
                    frames = n,
                    variants = b,
                    steps_done = reported,
                    error = %e,
                    "DiT out of memory with CFG {layout}; sampling again from the start with CFG {smaller}"
                );
                layout = smaller;
            }
            result => {
                dit.last_layout = Some(layout);
                return result;
            }
        }
    }
}

/// One sampler run with a fixed layout.
fn run(
    dit: &mut Dit,
    inputs: &SampleInputs,
    settings: &SamplerSettings,
    grid: &[f32],
    layout: Layout,
    on_step: &mut dyn FnMut(u32, u32) -> Result<(), InferenceError>,
) -> Result<Vec<f32>, InferenceError> {
    if layout == Layout::Batched && settings.solver == Solver::Euler {
        if let (Some(device), Some(mut step)) = (dit.io, dit.step.take()) {
            let result = device::run(
                dit,
                &mut step,
                device,
                inputs,
                settings.cfg_strength,
                grid,
                on_step,
            );
            dit.step = Some(step);
            return result;
        }
    }
    let (n, b, p) = (inputs.frames, inputs.variants, dit.precision);
    let len = b * n * LATENT_DIM;
    let mut runs = runs::Runs::new(dit, inputs, layout)?;
    let cfg = settings.cfg_strength;
    let (start, mut x) = start_latent(inputs, grid, p);
    let total = (grid.len() - 1 - start) as u32;
    let mut v = vec![0f32; len];
    for (k, w) in grid[start..].windows(2).enumerate() {
        let (t0, t1) = (w[0], w[1]);
        let dt = p.round(t1 - t0);
        match settings.solver {
            Solver::Euler => {
                runs.velocity(dit, &x, t0, cfg, &mut v)?;
            }
            Solver::Midpoint => {
                // torchdiffeq: y_mid = y0 + f(t0, y0)·dt/2; dy = dt·f(t0 + dt/2, y_mid).
                let half = p.round(0.5 * dt);
                runs.velocity(dit, &x, t0, cfg, &mut v)?;
                let mid: Vec<f32> = x
                    .iter()
                    .zip(&v)
                    .map(|(&xi, &vi)| p.round(xi + p.round(vi * half)))
                    .collect();
                runs.velocity(dit, &mid, p.round(t0 + half), cfg, &mut v)?;
            }
        }
        match p {
            Precision::F32 => {
                for (xi, &vi) in x.iter_mut().zip(&v) {
                    *xi += dt * vi;
                }
            }
            Precision::F16 => {
                for (xi, &vi) in x.iter_mut().zip(&v) {
                    *xi = p.round(*xi + p.round(dt * vi));
                }
            }
        }
        on_step(k as u32 + 1, total)?;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_matches_torch_linspace() {
        let g = time_grid(32, None, Precision::F32);
        assert_eq!(g.len(), 32);
        assert_eq!(g[0], 0.0);
        assert_eq!(g[31], 1.0);
        for (i, t) in g.iter().enumerate() {
            assert!((t - i as f32 / 31.0).abs() < 1e-6);
        }
        let h = time_grid(32, None, Precision::F16);
        assert_eq!(h[1], half::f16::from_f32(1.0 / 31.0).to_f32());
        assert_eq!(h[31], 1.0);
    }

    #[test]
    fn sway_warps_towards_zero() {
        let g = time_grid(5, Some(-1.0), Precision::F32);
        // s = -1: t' = 1 - cos(pi/2 t)
        for (i, t) in g.iter().enumerate() {
            let u = i as f32 / 4.0;
            assert!((t - (1.0 - (std::f32::consts::FRAC_PI_2 * u).cos())).abs() < 1e-6);
        }
    }

    #[test]
    fn init_starts_on_the_grid_and_renoises_on_the_straight_path() {
        let g = time_grid(32, None, Precision::F32);
        assert_eq!(start_step(&g, 1.0), 0);
        assert_eq!(start_step(&g, 0.0), 31);
        // 1 − 0.5 = 0.5 lies between 15/31 and 16/31: start at 16/31, 15 steps left.
        assert_eq!(start_step(&g, 0.5), 16);
        assert_eq!(start_step(&g, 0.01), 31);
        let warped = time_grid(8, Some(-1.0), Precision::F16);
        assert_eq!(start_step(&warped, 0.0), 7);
        let (noise, latent) = (vec![1.0, -2.0, 3.0, 4.0], vec![10.0, 20.0]);
        assert_eq!(renoise(&noise, &latent, 0.0, Precision::F32), noise);
        assert_eq!(
            renoise(&noise, &latent, 1.0, Precision::F32),
            vec![10.0, 20.0, 10.0, 20.0]
        );
        assert_eq!(
            renoise(&noise, &latent, 0.25, Precision::F32),
            vec![3.25, 3.5, 4.75, 8.0]
        );
    }

    #[test]
    fn noise_is_seeded_and_standard() {
        let a = noise(7, 2, 100, Precision::F32);
        assert_eq!(a, noise(7, 2, 100, Precision::F32));
        assert_ne!(a, noise(8, 2, 100, Precision::F32));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
