//! The whole DiffRhythm inference for one request, on sessions created once per node.
//!
//! [`Generator::load`] creates every ONNX Runtime session of a bundle (the DiTs, the VAE, the
//! style encoders) and keeps them for all later jobs. [`Generator::generate`] then follows the
//! reference `infer.py`: lyrics → token track, style embedding, optional edit reference latent,
//! CFM sampling with CFG, paste-back of kept edit frames, VAE decoding and peak normalisation.
//! It reports progress after every step and checks the cancellation token between steps.
//!
//! Addition, documented: [`GenerateRequest::init`] starts the sampler from a song's latents
//! re-noised (SDEdit for flow matching, see `crate::sampler`), which the reference cannot do;
//! the song's latents come from the VAE encoder exactly as an edit reference's do.
//!
//! Deviation, documented: with `variants > 1` the reference returns one randomly chosen sample;
//! Refrain returns all of them in order, and callers choose (the CLI writes them all).

use std::path::Path;
use std::time::{Duration, Instant};

use protocol::{ProgressEvent, Stage};
use tokio_util::sync::CancellationToken;

use crate::audio::{self, Decoded};
use crate::bundle::{Bundle, ModelChoice, Solver};
use crate::error::InferenceError;
use crate::lyrics::lrc::LyricsLimits;
use crate::lyrics::placement::frame_of;
use crate::lyrics::Lyrics;
use crate::prepare::{Parts, Prepared, Preparer};
use crate::progress::{CostModel, Tracker};
use crate::runtime::{DeviceSettings, Runtime, RuntimeConfig};
use crate::sampler::{self, CfgMode, Dit, SampleInputs, SamplerSettings, LATENT_DIM};
use crate::style::{self, StyleEncoder, StyleSource};
use crate::tensor::Graph;
use crate::vae::{DecodeEvent, Vae};

pub use refrain_model::edit::{parse_edit_segments, MAX_EDIT_SEGMENTS};
pub use refrain_model::track::{line_encoder, lyric_track};
pub use refrain_model::MAX_VARIANTS;

/// Node-level settings of the pipeline.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub runtime: RuntimeConfig,
    pub lyrics_limits: LyricsLimits,
    pub cfg_mode: CfgMode,
    /// Longest reference recording accepted (style or edit), in seconds.
    pub max_reference_seconds: f64,
    /// The device's memory limit and IO binding (`[inference]` in the service configuration).
    pub device: DeviceSettings,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            runtime: RuntimeConfig::default(),
            lyrics_limits: LyricsLimits::default(),
            cfg_mode: CfgMode::Auto,
            max_reference_seconds: 600.0,
            device: DeviceSettings::default(),
        }
    }
}

/// Edit (inpainting) mode: regenerate `segments` of a reference song, keep the rest. The
/// reference may be shorter than the song when the segments regenerate everything after its
/// end (extending a song).
#[derive(Debug, Clone)]
pub struct EditRequest {
    /// The song to edit.
    pub reference: Decoded,
    /// `[start_s, end_s]` spans to regenerate; `-1` means the song's start or end.
    pub segments: Vec<(f64, f64)>,
}

/// A sampler start from a song instead of pure noise (Refrain's addition; SDEdit for flow
/// matching): the song's latents re-noised to `t0 = 1 − strength`, then only the remaining
/// steps. The song covers every frame of the new one (a longer one is cut).
#[derive(Debug, Clone)]
pub struct InitRequest {
    pub song: Decoded,
    /// Noise strength, 0 (the song itself) to 1 (a fresh generation).
    pub strength: f32,
}

/// One generation request, already independent of the API it came from.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// LRC text (or plain lyrics; empty for an instrumental).
    pub lyrics: String,
    pub style: StyleSource,
    /// Song length in whole seconds: 95 (base model) or 96..=285 (full model).
    pub seconds: u32,
    pub seed: u64,
    /// Time-grid points; `None` takes the bundle default (32).
    pub steps: Option<u32>,
    /// CFG strength; `None` takes the bundle default (4.0).
    pub cfg_strength: Option<f32>,
    /// Variants generated together (1..=4).
    pub variants: usize,
    /// Chunked VAE decoding (less memory).
    pub chunked: bool,
    pub edit: Option<EditRequest>,
    /// Start from a re-noised song; not together with `edit`.
    pub init: Option<InitRequest>,
}

impl GenerateRequest {
    /// A request with the reference defaults: a text prompt, seed 0, one variant, chunked.
    pub fn new(lyrics: impl Into<String>, style: StyleSource, seconds: u32) -> Self {
        GenerateRequest {
            lyrics: lyrics.into(),
            style,
            seconds,
            seed: 0,
            steps: None,
            cfg_strength: None,
            variants: 1,
            chunked: true,
            edit: None,
            init: None,
        }
    }
}

/// Where the time of one generation went.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub total: Duration,
    pub prepare: Duration,
    pub sampling: Duration,
    pub decode: Duration,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOutput {
    /// One interleaved 16-bit stereo song per variant, peak-normalised, `frames · 2048` samples
    /// per channel.
    pub songs: Vec<Vec<i16>>,
    pub sample_rate: u32,
    pub frames: usize,
    /// Name of the DiT that ran (`base` or `full`).
    pub model: String,
    pub lyrics: Lyrics,
    pub timings: Timings,
    /// What ran with less memory than asked after ONNX Runtime ran out of it (empty normally):
    /// the DiT with fewer rows per call, the VAE chunked.
    pub fallbacks: Vec<String>,
}

/// The regenerate mask over `frames` frames: `true` where a segment regenerates (reference
/// `pred_frames` and `fixed_span_mask`).
pub fn edit_mask(
    segments: &[(f64, f64)],
    frames: usize,
    max_frames: usize,
    sample_rate: u32,
    hop: usize,
) -> Vec<bool> {
    let mut mask = vec![false; frames];
    for &(s, e) in segments {
        let start = if s == -1.0 {
            0
        } else {
            frame_of(s, sample_rate, hop)
        };
        let end = if e == -1.0 {
            max_frames
        } else {
            frame_of(e, sample_rate, hop)
        };
        for m in mask.iter_mut().take(end.min(frames)).skip(start) {
            *m = true;
        }
    }
    mask
}

/// One node's loaded bundle: sessions are created once and reused for every job.
pub struct Generator {
    bundle: Bundle,
    runtime: Runtime,
    config: GeneratorConfig,
    dits: Vec<Dit>,
    vae: Vae,
    /// The lyric front end and the style encoders, shared with whoever prepares the next job.
    prep: Preparer,
    /// The negative style (a copy of the style encoder's).
    negative: Vec<f32>,
    cost: CostModel,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("bundle", &self.bundle.manifest.name)
            .field("device", &self.runtime.device())
            .finish_non_exhaustive()
    }
}

impl Generator {
    /// Loads ONNX Runtime (once per process), the bundle at `path` and all its sessions, with
    /// the device settings of `config`.
    pub fn load(path: &Path, config: GeneratorConfig) -> Result<Generator, InferenceError> {
        let bundle = Bundle::load(path)?;
        let runtime = Runtime::init_with(config.runtime.clone(), config.device)?;
        let m = &bundle.manifest;
        let graph = |name: &str, file: &Path| -> Result<Graph, InferenceError> {
            Ok(Graph::new(name, runtime.session(&bundle.file(file))?))
        };
        let dits = m
            .dit
            .iter()
            .map(|d| {
                let mut dit = Dit::new(
                    graph(&format!("dit {}", d.name), &d.file)?,
                    d.duration_input,
                )?;
                dit.bind_io(&runtime)?;
                Ok::<_, InferenceError>(dit)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoder = match &m.vae.encoder {
            Some(f) => Some(graph("vae encoder", f)?),
            None => None,
        };
        let vae = Vae::new(
            graph("vae decoder", &m.vae.decoder)?,
            encoder,
            m.vae.chunk_frames,
            m.vae.overlap_frames,
            m.audio.hop,
        )?;
        let negative = style::load_negative(&bundle.file(&m.style.negative))?;
        let style = StyleEncoder::new(
            graph("style text encoder", &m.style.text_encoder)?,
            &bundle.file(&m.style.tokenizer),
            graph("style audio encoder", &m.style.audio_encoder)?,
            m.style.audio_sample_rate,
            m.style.audio_seconds,
            negative,
        )?;
        let lyrics = crate::polyphone::line_encoder(&bundle, &runtime, None, None)?;
        tracing::info!(bundle = %m.name, version = %m.version, device = %runtime.device(), "bundle loaded");
        let negative = style.negative().to_vec();
        let prep = Preparer::new(Parts {
            bundle: bundle.clone(),
            limits: config.lyrics_limits,
            lyrics,
            style,
        });
        Ok(Generator {
            bundle,
            runtime,
            config,
            dits,
            vae,
            prep,
            negative,
            cost: CostModel::default(),
        })
    }

    /// Total wall time spent inside ONNX Runtime by all of this node's graphs so far.
    pub fn onnx_time(&self) -> Duration {
        self.dits.iter().map(|d| d.graph.busy).sum::<Duration>()
            + self.vae.busy()
            + self.prep.lock().style.busy()
    }

    /// The lyric front end and style encoders, to prepare a request on another thread while
    /// this generator runs ([`Generator::generate_prepared`]).
    pub fn preparer(&self) -> Preparer {
        self.prep.clone()
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Checks a request's parameters against the bundle without running anything.
    pub fn validate(
        &self,
        req: &GenerateRequest,
    ) -> Result<(ModelChoice, SamplerSettings), InferenceError> {
        let choice = self
            .bundle
            .choose_model(req.seconds)
            .map_err(InferenceError::InvalidRequest)?;
        let s = &self.bundle.manifest.sampler;
        let settings = SamplerSettings {
            steps: req.steps.unwrap_or(s.steps),
            cfg_strength: req.cfg_strength.unwrap_or(s.cfg_strength),
            solver: s.solver,
            sway_coef: s.sway_coef,
            cfg_mode: self.config.cfg_mode,
        };
        if !(2..=1000).contains(&settings.steps) {
            return Err(InferenceError::InvalidRequest(format!(
                "steps must be between 2 and 1000 (time-grid points; 32 is the reference), got {}",
                settings.steps
            )));
        }
        if !settings.cfg_strength.is_finite() || !(0.0..=20.0).contains(&settings.cfg_strength) {
            return Err(InferenceError::InvalidRequest(format!(
                "cfg_strength must be between 0 and 20, got {}",
                settings.cfg_strength
            )));
        }
        if !(1..=MAX_VARIANTS).contains(&req.variants) {
            return Err(InferenceError::InvalidRequest(format!(
                "batch_infer_num must be between 1 and {MAX_VARIANTS}, got {}",
                req.variants
            )));
        }
        if let StyleSource::Prompt(p) = &req.style {
            StyleEncoder::validate_prompt(p)?;
        }
        if let Some(init) = &req.init {
            if req.edit.is_some() {
                return Err(InferenceError::InvalidRequest(
                    "init and edit cannot be combined".into(),
                ));
            }
            if !init.strength.is_finite() || !(0.0..=1.0).contains(&init.strength) {
                return Err(InferenceError::InvalidRequest(format!(
                    "init strength must be between 0 and 1, got {}",
                    init.strength
                )));
            }
            if !self.vae.has_encoder() {
                return Err(InferenceError::InvalidRequest(
                    "starting from a song needs a VAE encoder, and this bundle has none".into(),
                ));
            }
        }
        if let Some(edit) = &req.edit {
            if !self.vae.has_encoder() {
                return Err(InferenceError::InvalidRequest(
                    "edit mode needs a VAE encoder, and this bundle has none".into(),
                ));
            }
            if edit.segments.is_empty() || edit.segments.len() > MAX_EDIT_SEGMENTS {
                return Err(InferenceError::InvalidRequest(format!(
                    "edit needs 1 to {MAX_EDIT_SEGMENTS} segments"
                )));
            }
            let song = self.bundle.frames_to_seconds(choice.frames);
            if let Some((i, (s, _))) = edit
                .segments
                .iter()
                .enumerate()
                .find(|(_, (s, _))| *s >= song)
            {
                return Err(InferenceError::InvalidRequest(format!(
                    "edit_segments: segment {i} starts at {s} s, after the song's end ({song:.1} s)"
                )));
            }
        }
        Ok((choice, settings))
    }

    /// The latents `[T*64]` of a song to edit or start from: the reference's preparation
    /// (44.1 kHz stereo at −6 dBFS peak) and the VAE encoder, sampled with the request's seed.
    fn song_latent(
        &mut self,
        song: &Decoded,
        seed: u64,
        cancel: &CancellationToken,
    ) -> Result<Vec<f32>, InferenceError> {
        let sr = self.bundle.manifest.audio.sample_rate;
        let song = audio::reference_song(song, sr)?;
        self.vae.encode(&song, seed, |_, _| {
            if cancel.is_cancelled() {
                Err(InferenceError::Cancelled)
            } else {
                Ok(())
            }
        })
    }

    /// Generates a song. `progress` receives every event; `cancel` is checked between steps.
    pub fn generate(
        &mut self,
        req: &GenerateRequest,
        cancel: &CancellationToken,
        progress: &mut dyn FnMut(ProgressEvent),
    ) -> Result<GenerateOutput, InferenceError> {
        self.generate_prepared(req, None, cancel, progress)
    }

    /// [`Generator::generate`] with the lyric track and style embedding made ahead
    /// ([`Preparer::prepare`]); made here when `prepared` is `None` or does not match `req`.
    /// The events and the song are the same either way.
    pub fn generate_prepared(
        &mut self,
        req: &GenerateRequest,
        prepared: Option<Prepared>,
        cancel: &CancellationToken,
        progress: &mut dyn FnMut(ProgressEvent),
    ) -> Result<GenerateOutput, InferenceError> {
        let started = Instant::now();
        let (choice, settings) = self.validate(req)?;
        let (sr, hop) = (
            self.bundle.manifest.audio.sample_rate,
            self.bundle.manifest.audio.hop,
        );
        let n = choice.frames;
        let b = req.variants;
        let solver_evals = match settings.solver {
            Solver::Euler => 1,
            Solver::Midpoint => 2,
        };
        let decodes = (self.vae.decode_runs(n, req.chunked) * b) as u32;
        let units = (n * b * solver_evals) as f64;
        let cost = self.cost;
        let dit = &self.dits[choice.dit];
        let start = req.init.as_ref().map(|init| {
            let grid = sampler::time_grid(settings.steps, settings.sway_coef, dit.precision);
            sampler::start_step(&grid, init.strength)
        });
        let steps = settings.steps - 1 - start.unwrap_or(0) as u32;
        let mut tracker = Tracker::new(progress, steps, decodes, units, cost);
        let check = |c: &CancellationToken| {
            if c.is_cancelled() {
                Err(InferenceError::Cancelled)
            } else {
                Ok(())
            }
        };

        // 1. Lyrics and 2. style, unless made ahead.
        let prepared = match prepared.filter(|p| p.matches(req)) {
            Some(p) => p,
            None => self.prep.prepare(req)?,
        };
        let (lyrics, style) = (prepared.lyrics, prepared.style);
        let prep_total = if req.edit.is_some() || req.init.is_some() {
            3
        } else {
            2
        };
        tracker.prepare(Stage::Tokenize, 1, prep_total);
        check(cancel)?;

        tracker.prepare(Stage::Style, 2, prep_total);
        check(cancel)?;

        // 3. Edit reference, or the song an init run starts from.
        let mut cond = vec![0f32; n * LATENT_DIM];
        let mut mask = vec![true; n];
        let mut init = None;
        if let (Some(request), Some(start)) = (&req.init, start) {
            let mut latent = self.song_latent(&request.song, req.seed, cancel)?;
            let have = latent.len() / LATENT_DIM;
            if have < n {
                return Err(InferenceError::InvalidRequest(format!(
                    "the song to start from is {:.1} s long, shorter than the {:.1} s being \
                     generated: it must cover every frame",
                    self.bundle.frames_to_seconds(have),
                    self.bundle.frames_to_seconds(n)
                )));
            }
            latent.truncate(n * LATENT_DIM);
            init = Some(sampler::Init { latent, start });
            tracker.prepare(Stage::Encode, 3, prep_total);
        }
        if let Some(edit) = &req.edit {
            let latent = self.song_latent(&edit.reference, req.seed, cancel)?;
            let have = latent.len() / LATENT_DIM;
            mask = edit_mask(&edit.segments, n, choice.max_frames, sr, hop);
            // A reference shorter than the song (extending it) is padded with zeros, as the
            // HF Space does, but only when every frame past its end is regenerated: the
            // padding must never be pasted back as silence.
            if have < n && !mask[have..].iter().all(|&regen| regen) {
                return Err(InferenceError::InvalidRequest(format!(
                    "the reference song is {:.1} s long, shorter than the {:.1} s being \
                     generated, and the segments keep part of what follows its end: regenerate \
                     everything after {:.1} s",
                    self.bundle.frames_to_seconds(have),
                    self.bundle.frames_to_seconds(n),
                    self.bundle.frames_to_seconds(have)
                )));
            }
            let keep = have.min(n) * LATENT_DIM;
            cond[..keep].copy_from_slice(&latent[..keep]);
            tracker.prepare(Stage::Encode, 3, prep_total);
        }
        let kept_cond = cond.clone();
        for (f, &regen) in mask.iter().enumerate() {
            if regen {
                cond[f * LATENT_DIM..(f + 1) * LATENT_DIM].fill(0.0);
            }
        }
        let prepared = started.elapsed();

        // 4. Sampling.
        let dit = &mut self.dits[choice.dit];
        let inputs = SampleInputs {
            frames: n,
            variants: b,
            cond,
            text: lyrics.track.tokens.clone(),
            style,
            negative: self.negative.clone(),
            duration: n as f32 / choice.max_frames as f32,
            noise: sampler::noise(req.seed, b, n, dit.precision),
            init,
        };
        let mut latents = sampler::sample(dit, &inputs, &settings, |k, total| {
            tracker.step(k, total);
            check(cancel)
        })?;
        let sampled = started.elapsed();
        // Edit: paste the reference back where it is kept (`where(mask, x, cond)`).
        for v in 0..b {
            for (f, &regen) in mask.iter().enumerate() {
                if !regen {
                    let at = (v * n + f) * LATENT_DIM;
                    latents[at..at + LATENT_DIM]
                        .copy_from_slice(&kept_cond[f * LATENT_DIM..(f + 1) * LATENT_DIM]);
                }
            }
        }

        let mut fallbacks = Vec::new();
        let layout = sampler::Layout::initial(settings.cfg_mode, dit.dynamic_batch);
        if let Some(last) = dit.last_layout.filter(|&l| l != layout) {
            fallbacks.push(format!("DiT out of memory: CFG {layout} -> {last}"));
        }

        // 5. Decode each variant and normalise it on its own peak.
        let (songs, chunked) = self.vae.decode_songs(
            &latents,
            b,
            req.chunked,
            |event| {
                match event {
                    DecodeEvent::Chunk => tracker.decoded(),
                    DecodeEvent::Restart { runs } => tracker.restart_decoding(runs as u32),
                }
                check(cancel)
            },
            |[l, r]| audio::peak_normalise_to_i16(&l, &r),
        )?;
        if chunked != req.chunked {
            fallbacks.push("VAE decoder out of memory: unchunked -> chunked".to_string());
        }
        tracker.done();
        self.cost = tracker.measured();
        let total = started.elapsed();
        Ok(GenerateOutput {
            songs,
            sample_rate: sr,
            frames: n,
            model: self.bundle.manifest.dit[choice.dit].name.clone(),
            lyrics,
            fallbacks,
            timings: Timings {
                total,
                prepare: prepared,
                sampling: sampled - prepared,
                decode: total - sampled,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_mask_follows_pred_frames() {
        let m = edit_mask(&[(-1.0, 1.0), (3.0, -1.0)], 100, 2048, 44100, 2048);
        assert!(m[..21].iter().all(|&x| x));
        assert!(m[21..64].iter().all(|&x| !x));
        assert!(m[64..].iter().all(|&x| x));
    }
}
