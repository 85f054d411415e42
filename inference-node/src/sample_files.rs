//! The sampler alone on inputs given as NumPy files (`refrain sample`), for parity checks of
//! Refrain's sampler against any other implementation of DiffRhythm's `CFM.sample` on the same
//! DiT graph, inputs and noise.
//!
//! The input directory holds (B variants, N frames):
//!
//! | file | shape, type | what |
//! |---|---|---|
//! | `noise.npy` | `[B,N,64]` f32 | the start noise |
//! | `cond.npy` | `[1,N,64]` f32 | the DiT's `cond` as the conditional branch receives it (the edit reference with the regenerated frames zeroed; zeros otherwise) |
//! | `text.npy` | `[1,N]` i64 | frame-aligned lyric tokens (0 = pad) |
//! | `style.npy`, `neg_style.npy` | `[1,512]` f32 | the style and the negative style |
//! | `start_time.npy` | `[1]` f32 | must be 0, as the reference always passes |
//! | `duration.npy` | `[1]` f32 | `N / max_frames`, only for a graph with a `duration` input |
//! | `t_grid.npy` (optional) | `[K]` f32 | the time grid; without it `linspace(0, 1, steps)` |
//! | `gen_mask.npy` (edit mode) | `[1,N]` bool | true = generate |
//! | `ref_latent.npy` (edit mode) | `[1,N,64]` f32 | pasted back where `gen_mask` is false |
//!
//! The output is the final latent `[B,N,64]` f32, after the paste-back in edit mode.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ndarray::{Array3, ArrayD};
use ndarray_npy::{ReadNpyError, ReadableElement, WriteNpyError};
use thiserror::Error;

use crate::error::InferenceError;
use crate::runtime::Runtime;
use crate::sampler::{self, Dit, SampleInputs, SamplerSettings, LATENT_DIM, STYLE_DIM};
use crate::tensor::Graph;

/// What can be wrong with a sampler input directory or its run.
#[derive(Debug, Error)]
pub enum SampleFilesError {
    #[error("{file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: ReadNpyError,
    },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error("{file} is missing: {why}")]
    Missing { file: PathBuf, why: &'static str },
    #[error("writing {file}: {source}")]
    Write {
        file: PathBuf,
        #[source]
        source: WriteNpyError,
    },
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

/// The sampler inputs read from a directory.
#[derive(Debug, Clone)]
pub struct SampleFiles {
    pub inputs: SampleInputs,
    /// The time grid of `t_grid.npy`, if given.
    pub grid: Option<Vec<f32>>,
    /// Edit mode: `(gen_mask [N], ref_latent [N*64])`.
    pub paste_back: Option<(Vec<bool>, Vec<f32>)>,
}

/// A finished run: the final latent and where the time went.
#[derive(Debug)]
pub struct SampleRun {
    pub latent: Array3<f32>,
    /// Solver steps run.
    pub steps: u32,
    /// Wall time of the sampler loop (all steps, host work included).
    pub elapsed: Duration,
    /// Of which inside ONNX Runtime.
    pub in_runtime: Duration,
}

fn read<T: ReadableElement>(dir: &Path, name: &str) -> Result<Option<ArrayD<T>>, SampleFilesError> {
    let file = dir.join(name);
    if !file.exists() {
        return Ok(None);
    }
    ndarray_npy::read_npy::<_, ArrayD<T>>(&file)
        .map(Some)
        .map_err(|source| SampleFilesError::Read { file, source })
}

fn require<T: ReadableElement>(
    dir: &Path,
    name: &str,
    why: &'static str,
) -> Result<ArrayD<T>, SampleFilesError> {
    read(dir, name)?.ok_or_else(|| SampleFilesError::Missing {
        file: dir.join(name),
        why,
    })
}

/// Checks `a`'s shape against `want` (`None` = any size) and returns its values in order.
fn values<T: Clone>(
    dir: &Path,
    name: &str,
    a: ArrayD<T>,
    want: &[Option<usize>],
) -> Result<(Vec<usize>, Vec<T>), SampleFilesError> {
    let shape = a.shape().to_vec();
    let fits = shape.len() == want.len()
        && shape
            .iter()
            .zip(want)
            .all(|(s, w)| w.is_none_or(|w| *s == w));
    if !fits {
        let want: Vec<String> = want
            .iter()
            .map(|w| w.map_or("_".to_string(), |w| w.to_string()))
            .collect();
        return Err(SampleFilesError::Invalid {
            file: dir.join(name),
            message: format!("shape {shape:?}, expected [{}]", want.join(", ")),
        });
    }
    Ok((shape, a.iter().cloned().collect()))
}

/// Reads the inputs of one run from `dir` for a graph with (`has_duration`) or without a
/// `duration` input.
pub fn read_dir(dir: &Path, has_duration: bool) -> Result<SampleFiles, SampleFilesError> {
    let (shape, noise) = values(
        dir,
        "noise.npy",
        require::<f32>(dir, "noise.npy", "the start noise [B,N,64]")?,
        &[None, None, Some(LATENT_DIM)],
    )?;
    let (b, n) = (shape[0], shape[1]);
    let n_64 = [Some(1), Some(n), Some(LATENT_DIM)];
    let (_, cond) = values(
        dir,
        "cond.npy",
        require::<f32>(dir, "cond.npy", "the DiT's cond [1,N,64]")?,
        &n_64,
    )?;
    let (_, text) = values(
        dir,
        "text.npy",
        require::<i64>(dir, "text.npy", "the lyric tokens [1,N] i64")?,
        &[Some(1), Some(n)],
    )?;
    let style_shape = [Some(1), Some(STYLE_DIM)];
    let (_, style) = values(
        dir,
        "style.npy",
        require::<f32>(dir, "style.npy", "the style [1,512]")?,
        &style_shape,
    )?;
    let (_, negative) = values(
        dir,
        "neg_style.npy",
        require::<f32>(dir, "neg_style.npy", "the negative style [1,512]")?,
        &style_shape,
    )?;
    if let Some(a) = read::<f32>(dir, "start_time.npy")? {
        let (_, s) = values(dir, "start_time.npy", a, &[Some(1)])?;
        if s[0] != 0.0 {
            return Err(SampleFilesError::Invalid {
                file: dir.join("start_time.npy"),
                message: format!(
                    "start time {}: only 0 is supported (the reference always passes 0)",
                    s[0]
                ),
            });
        }
    }
    let duration = if has_duration {
        let a = require::<f32>(
            dir,
            "duration.npy",
            "the graph has a `duration` input: N / max_frames, [1]",
        )?;
        values(dir, "duration.npy", a, &[Some(1)])?.1[0]
    } else {
        0.0
    };
    let grid = match read::<f32>(dir, "t_grid.npy")? {
        Some(a) => Some(values(dir, "t_grid.npy", a, &[None])?.1),
        None => None,
    };
    let paste_back = match read::<bool>(dir, "gen_mask.npy")? {
        None => None,
        Some(mask) => {
            let (_, mask) = values(dir, "gen_mask.npy", mask, &[Some(1), Some(n)])?;
            let reference = require::<f32>(
                dir,
                "ref_latent.npy",
                "edit mode (gen_mask.npy) pastes it back",
            )?;
            let (_, reference) = values(dir, "ref_latent.npy", reference, &n_64)?;
            Some((mask, reference))
        }
    };
    Ok(SampleFiles {
        inputs: SampleInputs {
            frames: n,
            variants: b,
            cond,
            text,
            style,
            negative,
            duration,
            noise,
            init: None,
        },
        grid,
        paste_back,
    })
}

/// Loads the DiT graph `dit` on `runtime`'s device. Whether it takes `duration` is read from
/// the graph.
pub fn load_dit(runtime: &Runtime, dit: &Path) -> Result<Dit, SampleFilesError> {
    let graph = Graph::new(
        dit.display().to_string(),
        runtime.session(dit).map_err(InferenceError::from)?,
    );
    let has_duration = graph.has_input("duration");
    let mut dit = Dit::new(graph, has_duration)?;
    dit.bind_io(runtime)?;
    Ok(dit)
}

/// Runs the sampler on the inputs of `dir` (steps and grid from `t_grid.npy` when present,
/// else from `settings`) and pastes the reference back in edit mode.
pub fn run(
    dit: &mut Dit,
    dir: &Path,
    settings: &SamplerSettings,
) -> Result<SampleRun, SampleFilesError> {
    let files = read_dir(dir, dit.has_duration)?;
    let grid = match &files.grid {
        Some(g) => g.clone(),
        None => {
            if settings.steps < 2 {
                return Err(
                    InferenceError::InvalidRequest("steps must be at least 2".into()).into(),
                );
            }
            sampler::time_grid(settings.steps, settings.sway_coef, dit.precision)
        }
    };
    let busy = dit.graph.busy;
    let started = Instant::now();
    let mut steps = 0;
    let x = sampler::sample_on_grid(dit, &files.inputs, settings, &grid, |k, _| {
        steps = k;
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let (b, n) = (files.inputs.variants, files.inputs.frames);
    let mut latent =
        Array3::from_shape_vec((b, n, LATENT_DIM), x).expect("the sampler returns [B,N,64]");
    if let Some((mask, reference)) = &files.paste_back {
        paste_back(&mut latent, mask, reference);
    }
    Ok(SampleRun {
        latent,
        steps,
        elapsed,
        in_runtime: dit.graph.busy - busy,
    })
}

/// The reference's `where(gen_mask, sampled, reference)` for every variant.
pub fn paste_back(latent: &mut Array3<f32>, generate: &[bool], reference: &[f32]) {
    for mut variant in latent.outer_iter_mut() {
        for (f, mut frame) in variant.outer_iter_mut().enumerate() {
            if !generate[f] {
                frame.assign(&ndarray::ArrayView1::from(
                    &reference[f * LATENT_DIM..(f + 1) * LATENT_DIM],
                ));
            }
        }
    }
}

/// Writes a latent `[B,N,64]` as an f32 `.npy`.
pub fn write_latent(file: &Path, latent: &Array3<f32>) -> Result<(), SampleFilesError> {
    ndarray_npy::write_npy(file, latent).map_err(|source| SampleFilesError::Write {
        file: file.to_path_buf(),
        source,
    })
}
