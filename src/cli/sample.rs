//! `refrain sample`: the sampler alone on inputs given as NumPy files, writing the final
//! latent, for parity checks against any implementation of DiffRhythm's sampler (the files are
//! described in `refrain_inference::sample_files`).

use std::path::PathBuf;

use anyhow::Context;
use refrain_inference::bundle::Solver;
use refrain_inference::runtime::{Device, Runtime, RuntimeConfig};
use refrain_inference::sample_files;
use refrain_inference::sampler::{CfgMode, SamplerSettings};

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// The DiT graph (inputs x, cond, text, time, style, start_time[, duration]; output v).
    #[arg(long)]
    dit: PathBuf,
    /// Directory of noise.npy, cond.npy, text.npy, style.npy, neg_style.npy, start_time.npy,
    /// duration.npy (full model), optional t_grid.npy, gen_mask.npy + ref_latent.npy (edit).
    #[arg(long)]
    inputs: PathBuf,
    /// Output: the final latent [B,N,64] as f32 .npy.
    #[arg(short, long)]
    output: PathBuf,
    /// Time-grid points when there is no t_grid.npy (32 = the reference's 31 Euler steps).
    #[arg(long, default_value_t = 32)]
    steps: u32,
    /// Classifier-free guidance strength.
    #[arg(long, default_value_t = 4.0)]
    cfg: f32,
    /// How the CFG branches run: auto (one batch of 2 when the graph allows), batched,
    /// separate or single (each variant and branch alone: the least memory).
    #[arg(long, default_value = "auto")]
    cfg_mode: CfgMode,
    /// Execution device: cpu, cuda, cuda:N, tensorrt or tensorrt:N.
    #[arg(long, env = "REFRAIN_DEVICE", default_value = "cpu")]
    device: Device,
    /// Path of libonnxruntime.so (default: ORT_DYLIB_PATH, then .ort/lib).
    #[arg(long, env = "REFRAIN_ORT_LIBRARY")]
    ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    let runtime = Runtime::init(RuntimeConfig {
        library: args.ort_library,
        device: args.device,
        intra_threads: args.threads,
        engine_cache: None,
    })?;
    let mut dit = sample_files::load_dit(&runtime, &args.dit)?;
    let settings = SamplerSettings {
        steps: args.steps,
        cfg_strength: args.cfg,
        solver: Solver::Euler,
        sway_coef: None,
        cfg_mode: args.cfg_mode,
    };
    let run = sample_files::run(&mut dit, &args.inputs, &settings)
        .with_context(|| format!("sampling on {}", args.inputs.display()))?;
    sample_files::write_latent(&args.output, &run.latent)?;
    let shape = run.latent.shape();
    let per_step = run.elapsed.as_secs_f64() * 1e3 / run.steps.max(1) as f64;
    eprintln!(
        "wrote {} ([{}, {}, {}]): {} steps in {:.3} s, {per_step:.2} ms per step ({:.1}% inside ONNX Runtime)",
        args.output.display(),
        shape[0],
        shape[1],
        shape[2],
        run.steps,
        run.elapsed.as_secs_f64(),
        100.0 * run.in_runtime.as_secs_f64() / run.elapsed.as_secs_f64().max(1e-9),
    );
    Ok(())
}
