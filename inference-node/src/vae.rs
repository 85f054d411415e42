//! The VAE: latents to 44.1 kHz stereo audio (decoder) and back (encoder, for edit mode).
//!
//! Chunked decoding and encoding follow the reference `decode_audio` / `encode_audio`
//! (`infer_utils.py`): windows of `chunk_frames` (128) with `overlap_frames` (32) overlap, a
//! final window aligned to the end, and a hard cut that drops half the overlap on each interior
//! edge. Unchunked decoding runs the whole latent at once (more memory, no seams); when ONNX
//! Runtime runs out of memory for it, [`Vae::decode_songs`] logs a warning and decodes every
//! variant again chunked, so the songs are those of a chunked run.
//! The encoder either outputs the latent directly (64 channels, a deterministic encoder such as
//! the test bundle's) or mean and scale (128 channels, the real Oobleck VAE), in which case the
//! latent is sampled as the reference does: `mean + (softplus(scale) + 1e-4) · ε`, with ε from
//! the request's seed.

use std::ops::Range;

use ort::session::SessionInputValue;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::InferenceError;
use crate::sampler::LATENT_DIM;
use crate::tensor::{float_tensor, visit_f32_unchecked, Graph, Precision};

/// One window of a chunked pass: which input it reads, which part of its output is kept and
/// where that part goes. Input and output are in their own units (frames or samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub input: Range<usize>,
    pub keep: Range<usize>,
    pub dest: Range<usize>,
}

/// How output units relate to input units.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// Decoder: one input frame becomes `r` output samples.
    Up(usize),
    /// Encoder: `r` input samples become one output frame (integer division, as the reference).
    Down(usize),
}

impl Scale {
    fn out(self, n: usize) -> usize {
        match self {
            Scale::Up(r) => n * r,
            Scale::Down(r) => n / r,
        }
    }
}

/// The reference's chunk plan over `total` input units with windows of `chunk` and overlap
/// `overlap` (both in input units).
pub fn plan(total: usize, chunk: usize, overlap: usize, scale: Scale) -> Vec<Piece> {
    let hop = chunk - overlap;
    let mut starts: Vec<usize> = if total >= chunk {
        (0..=total - chunk).step_by(hop).collect()
    } else {
        Vec::new()
    };
    if starts.last().copied().unwrap_or(0) + chunk != total {
        // The final window is `x[..., -chunk:]`: the whole input when it is shorter than a chunk.
        starts.push(total.saturating_sub(chunk));
    }
    let total_out = scale.out(total);
    let half_ol = scale.out(overlap) / 2;
    let count = starts.len();
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let input = s..(s + chunk).min(total);
            let len_out = scale.out(input.len());
            let last = k + 1 == count;
            let (mut t0, mut t1) = if last {
                (total_out - len_out, total_out)
            } else {
                (scale.out(k * hop), scale.out(k * hop) + scale.out(chunk))
            };
            let (mut c0, mut c1) = (0, len_out);
            if k > 0 {
                t0 += half_ol;
                c0 += half_ol;
            }
            if !last {
                t1 -= half_ol;
                c1 -= half_ol;
            }
            Piece {
                input,
                keep: c0..c1,
                dest: t0..t1,
            }
        })
        .collect()
}

/// Progress of [`Vae::decode_songs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeEvent {
    /// One decoder run finished.
    Chunk,
    /// Decoding starts again chunked: `runs` decoder runs in all from now on.
    Restart { runs: usize },
}

/// The VAE graphs of a bundle.
#[derive(Debug)]
pub struct Vae {
    decoder: Graph,
    decoder_precision: Precision,
    encoder: Option<(Graph, Precision)>,
    chunk: usize,
    overlap: usize,
    hop: usize,
}

impl Vae {
    /// Checks the graphs against the contract (`latent [B,64,T]` → `audio [B,2,T·hop]`, and
    /// `audio [B,2,S]` → `latent [B,64|128,S/hop]`).
    pub fn new(
        decoder: Graph,
        encoder: Option<Graph>,
        chunk: usize,
        overlap: usize,
        hop: usize,
    ) -> Result<Vae, InferenceError> {
        let decoder_precision = decoder.float_input("latent", 3)?;
        decoder.float_output("audio", 3)?;
        let encoder = match encoder {
            Some(g) => {
                let p = g.float_input("audio", 3)?;
                g.float_output("latent", 3)?;
                Some((g, p))
            }
            None => None,
        };
        Ok(Vae {
            decoder,
            decoder_precision,
            encoder,
            chunk,
            overlap,
            hop,
        })
    }

    /// Time spent inside ONNX Runtime by the decoder and encoder.
    pub fn busy(&self) -> std::time::Duration {
        self.decoder.busy + self.encoder.as_ref().map(|e| e.0.busy).unwrap_or_default()
    }

    /// Whether edit mode is available (the bundle has an encoder).
    pub fn has_encoder(&self) -> bool {
        self.encoder.is_some()
    }

    /// Number of decoder runs for a latent of `frames` frames.
    pub fn decode_runs(&self, frames: usize, chunked: bool) -> usize {
        if chunked {
            plan(frames, self.chunk, self.overlap, Scale::Up(self.hop)).len()
        } else {
            1
        }
    }

    /// Decodes the frames `piece.input` of `latent` and copies the kept part of the audio
    /// straight from ONNX Runtime's output into `out` (no intermediate buffers).
    fn decode_piece(
        &mut self,
        latent: &[f32],
        piece: &Piece,
        out: &mut [Vec<f32>; 2],
    ) -> Result<(), InferenceError> {
        // latent is [N, 64] (the sampler's layout); the decoder wants [1, 64, T].
        let t = piece.input.len();
        let mut chw = vec![0f32; LATENT_DIM * t];
        for (j, f) in piece.input.clone().enumerate() {
            for c in 0..LATENT_DIM {
                chw[c * t + j] = latent[f * LATENT_DIM + c];
            }
        }
        let name = self.decoder.name.clone();
        let input = float_tensor(&name, self.decoder_precision, &[1, LATENT_DIM, t], &chw)?;
        let outputs = self
            .decoder
            .run(vec![("latent", SessionInputValue::from(input))])?;
        let audio = outputs
            .get("audio")
            .ok_or_else(|| InferenceError::Contract {
                graph: name.clone(),
                message: "missing output `audio`".into(),
            })?;
        let len = t * self.hop;
        visit_f32_unchecked(&name, audio, |shape, data| {
            if shape != [1, 2, len] {
                return Err(InferenceError::Contract {
                    graph: name.clone(),
                    message: format!("`audio` has shape {shape:?}, expected [1, 2, {len}]"),
                });
            }
            // Copy and check finiteness in one pass over the (large) output.
            let mut finite = true;
            for (ch, dst) in out.iter_mut().enumerate() {
                let src = &data[ch * len..(ch + 1) * len];
                for (d, &x) in dst[piece.dest.clone()]
                    .iter_mut()
                    .zip(&src[piece.keep.clone()])
                {
                    *d = x;
                    finite &= x.is_finite();
                }
            }
            if finite {
                Ok(())
            } else {
                Err(InferenceError::NonFinite(name.clone()))
            }
        })?
    }

    /// Decodes one latent `[N, 64]` to planar stereo audio of `N · hop` samples per channel.
    /// `on_chunk()` is called after each decoder run.
    pub fn decode(
        &mut self,
        latent: &[f32],
        chunked: bool,
        mut on_chunk: impl FnMut() -> Result<(), InferenceError>,
    ) -> Result<[Vec<f32>; 2], InferenceError> {
        let frames = latent.len() / LATENT_DIM;
        let total = frames * self.hop;
        let mut out = [vec![0f32; total], vec![0f32; total]];
        let pieces = if chunked {
            plan(frames, self.chunk, self.overlap, Scale::Up(self.hop))
        } else {
            vec![Piece {
                input: 0..frames,
                keep: 0..total,
                dest: 0..total,
            }]
        };
        for piece in &pieces {
            self.decode_piece(latent, piece, &mut out)?;
            on_chunk()?;
        }
        Ok(out)
    }

    /// Decodes the `variants` latents `[B, N, 64]` one after the other and hands each song to
    /// `finish`. Unchunked decoding that runs out of memory ([`InferenceError::is_out_of_memory`])
    /// is logged and started again chunked for every variant (the songs are then exactly those
    /// of a chunked run); `event` hears of each decoder run and of the restart. Returns the
    /// finished songs and whether they were decoded chunked.
    pub fn decode_songs<T>(
        &mut self,
        latents: &[f32],
        variants: usize,
        mut chunked: bool,
        mut event: impl FnMut(DecodeEvent) -> Result<(), InferenceError>,
        mut finish: impl FnMut([Vec<f32>; 2]) -> T,
    ) -> Result<(Vec<T>, bool), InferenceError> {
        let one = latents.len() / variants.max(1);
        'attempt: loop {
            let mut songs = Vec::with_capacity(variants);
            for latent in latents.chunks(one.max(1)).take(variants) {
                match self.decode(latent, chunked, || event(DecodeEvent::Chunk)) {
                    Ok(song) => songs.push(finish(song)),
                    Err(e) if !chunked && e.is_out_of_memory() => {
                        let frames = one / LATENT_DIM;
                        tracing::warn!(
                            frames,
                            variants,
                            variants_done = songs.len(),
                            error = %e,
                            "VAE decoder out of memory unchunked; decoding every variant again chunked"
                        );
                        chunked = true;
                        event(DecodeEvent::Restart {
                            runs: self.decode_runs(frames, true) * variants,
                        })?;
                        continue 'attempt;
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok((songs, chunked));
        }
    }

    /// Encodes planar stereo audio (44.1 kHz, already normalised as the reference does) to a
    /// latent `[T, 64]` with `T = samples / hop`, chunked as the reference's edit mode does.
    pub fn encode(
        &mut self,
        audio: &[Vec<f32>; 2],
        seed: u64,
        mut on_chunk: impl FnMut(usize, usize) -> Result<(), InferenceError>,
    ) -> Result<Vec<f32>, InferenceError> {
        let (graph, precision) = self.encoder.as_mut().ok_or_else(|| {
            InferenceError::InvalidRequest(
                "this bundle has no VAE encoder: edit mode is unavailable".into(),
            )
        })?;
        let samples = audio[0].len();
        let frames = samples / self.hop;
        if frames == 0 {
            return Err(InferenceError::InvalidRequest(
                "reference song is shorter than one latent frame".into(),
            ));
        }
        let pieces = plan(
            samples,
            self.chunk * self.hop,
            self.overlap * self.hop,
            Scale::Down(self.hop),
        );
        let mut mean = vec![0f32; frames * LATENT_DIM];
        let mut scale: Option<Vec<f32>> = None;
        let count = pieces.len();
        for (k, piece) in pieces.into_iter().enumerate() {
            let s = piece.input.len();
            let mut buf = Vec::with_capacity(2 * s);
            buf.extend_from_slice(&audio[0][piece.input.clone()]);
            buf.extend_from_slice(&audio[1][piece.input.clone()]);
            let name = graph.name.clone();
            let input = float_tensor(&name, *precision, &[1, 2, s], &buf)?;
            let (shape, lat) =
                graph.run_f32(vec![("audio", SessionInputValue::from(input))], "latent")?;
            let t = s / self.hop;
            let channels = shape.get(1).copied().unwrap_or(0);
            if shape.len() != 3
                || shape[0] != 1
                || shape[2] != t
                || !(channels == LATENT_DIM || channels == 2 * LATENT_DIM)
            {
                return Err(InferenceError::Contract {
                    graph: name,
                    message: format!("`latent` has shape {shape:?}, expected [1, 64 or 128, {t}]"),
                });
            }
            if channels == 2 * LATENT_DIM && scale.is_none() {
                scale = Some(vec![0f32; frames * LATENT_DIM]);
            }
            for (j, f) in piece.keep.clone().zip(piece.dest.clone()) {
                for c in 0..LATENT_DIM {
                    mean[f * LATENT_DIM + c] = lat[c * t + j];
                    if let Some(sc) = scale.as_mut() {
                        sc[f * LATENT_DIM + c] = lat[(LATENT_DIM + c) * t + j];
                    }
                }
            }
            on_chunk(k + 1, count)?;
        }
        if let Some(scale) = scale {
            // The reference samples the posterior: mean + (softplus(scale) + 1e-4) · ε.
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(1);
            for (m, s) in mean.iter_mut().zip(scale) {
                let std = (s.exp().ln_1p()) + 1e-4;
                let eps: f32 = StandardNormal.sample(&mut rng);
                *m += std * eps;
            }
        }
        Ok(mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers(pieces: &[Piece], total_out: usize) {
        let mut seen = vec![0u32; total_out];
        for p in pieces {
            assert_eq!(p.keep.len(), p.dest.len());
            for i in p.dest.clone() {
                seen[i] += 1;
            }
        }
        // Every output position is written; the end-aligned final window may overwrite some.
        assert!(seen.iter().all(|&c| c >= 1), "{seen:?}");
    }

    #[test]
    fn plan_matches_the_reference_loop() {
        // 2048 frames: starts 0, 96, …, 1920 (21 windows), 1920 + 128 == 2048 so no extra one.
        let p = plan(2048, 128, 32, Scale::Up(1));
        assert_eq!(p.len(), 21);
        assert_eq!(
            p[0],
            Piece {
                input: 0..128,
                keep: 0..112,
                dest: 0..112
            }
        );
        assert_eq!(
            p[1],
            Piece {
                input: 96..224,
                keep: 16..112,
                dest: 112..208
            }
        );
        assert_eq!(
            p[20],
            Piece {
                input: 1920..2048,
                keep: 16..128,
                dest: 1936..2048
            }
        );
        covers(&p, 2048);
        // 6136 frames: loop starts up to 5952 (63 windows), then a final window at 6008.
        let p = plan(6136, 128, 32, Scale::Up(1));
        assert_eq!(p.len(), 64);
        assert_eq!(
            p[63],
            Piece {
                input: 6008..6136,
                keep: 16..128,
                dest: 6024..6136
            }
        );
        covers(&p, 6136);
    }

    #[test]
    fn plan_handles_short_inputs() {
        let p = plan(100, 128, 32, Scale::Up(2));
        assert_eq!(
            p,
            vec![Piece {
                input: 0..100,
                keep: 0..200,
                dest: 0..200
            }]
        );
        let p = plan(128, 128, 32, Scale::Up(1));
        assert_eq!(
            p,
            vec![Piece {
                input: 0..128,
                keep: 0..128,
                dest: 0..128
            }]
        );
        let p = plan(129, 128, 32, Scale::Up(1));
        assert_eq!(p.len(), 2);
        covers(&p, 129);
    }

    #[test]
    fn encoder_plan_in_samples() {
        let hop = 2048;
        let p = plan(2048 * hop, 128 * hop, 32 * hop, Scale::Down(hop));
        assert_eq!(p.len(), 21);
        assert_eq!(p[1].dest, 112..208);
        assert_eq!(p[1].keep, 16..112);
        covers(&p, 2048);
    }
}
