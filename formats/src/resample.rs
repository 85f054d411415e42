//! Streaming sample-rate conversion for the Opus path: Opus only codes 48 kHz (or 8/12/16/24
//! kHz), and songs are 44.1 kHz. Blocks of 16-bit samples go in as they are read from the WAV,
//! 48 kHz float samples come out through a callback, aligned with the input (the resampler's
//! delay is removed) and exactly `ceil(frames * to / from)` frames long in total.
//!
//! The resampler itself is the pipeline's, [`refrain_model::audio::new_resampler`], so both
//! resample the same way: rubato's synchronous FFT resampler (band-limited, Blackman-Harris²
//! window; 44100:48000 reduces to 147:160) for ordinary rate pairs and its asynchronous
//! windowed-sinc resampler for exotic ones. This module only streams through it.

use refrain_model::audio::new_resampler;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Indexing, Resampler};

use crate::error::FormatError;

/// Converts interleaved 16-bit blocks at `from` Hz into interleaved `f32` at `to` Hz.
pub(crate) struct StreamResampler {
    from: u32,
    to: u32,
    channels: usize,
    /// `None` when `from == to` (plain conversion to float).
    inner: Option<Inner>,
    /// Output frames to deliver in total: `ceil(total_in * to / from)`.
    out_total: u64,
    /// Output frames delivered so far.
    emitted: u64,
}

struct Inner {
    resampler: Box<dyn Resampler<f32>>,
    /// Input frames per `process_into_buffer` call.
    chunk_in: usize,
    /// Interleaved input chunk being filled.
    in_buf: Vec<f32>,
    /// Frames in `in_buf`.
    in_frames: usize,
    /// Interleaved output scratch (`output_frames_max` frames).
    out_buf: Vec<f32>,
    /// Leading output frames still to drop (the resampler's delay).
    to_trim: usize,
}

impl StreamResampler {
    /// A resampler for `total_in` frames of `channels`-channel audio.
    pub fn new(from: u32, to: u32, channels: usize, total_in: u64) -> Result<Self, FormatError> {
        let fail = |reason: String| FormatError::Resample { from, to, reason };
        if from == 0 || to == 0 || channels == 0 {
            return Err(fail("rates and channel count must be positive".into()));
        }
        let out_total = (u128::from(total_in) * u128::from(to)).div_ceil(u128::from(from)) as u64;
        let inner = if from == to {
            None
        } else {
            let resampler = new_resampler(from, to, channels).map_err(|e| fail(e.to_string()))?;
            let chunk_in = resampler.input_frames_next();
            let out_max = resampler.output_frames_max();
            Some(Inner {
                to_trim: resampler.output_delay(),
                resampler,
                chunk_in,
                in_buf: vec![0.0; chunk_in * channels],
                in_frames: 0,
                out_buf: vec![0.0; out_max * channels],
            })
        };
        Ok(StreamResampler {
            from,
            to,
            channels,
            inner,
            out_total,
            emitted: 0,
        })
    }

    /// Output frames delivered in total once [`StreamResampler::finish`] has run:
    /// `ceil(total_in * to / from)`.
    pub fn out_total(&self) -> u64 {
        self.out_total
    }

    /// Feeds interleaved samples (whole frames); resampled output goes to `sink`.
    pub fn push(
        &mut self,
        mut samples: &[i16],
        sink: &mut impl FnMut(&[f32]) -> Result<(), FormatError>,
    ) -> Result<(), FormatError> {
        let ch = self.channels;
        let Some(inner) = self.inner.as_mut() else {
            let frames = (samples.len() / ch) as u64;
            let take = frames.min(self.out_total - self.emitted) as usize;
            let converted: Vec<f32> = samples[..take * ch].iter().map(|&s| to_f32(s)).collect();
            self.emitted += take as u64;
            return sink(&converted);
        };
        while !samples.is_empty() {
            let room = (inner.chunk_in - inner.in_frames) * ch;
            let n = room.min(samples.len());
            let start = inner.in_frames * ch;
            for (dst, &src) in inner.in_buf[start..start + n].iter_mut().zip(&samples[..n]) {
                *dst = to_f32(src);
            }
            inner.in_frames += n / ch;
            samples = &samples[n..];
            if inner.in_frames == inner.chunk_in {
                let (from, to) = (self.from, self.to);
                let produced = inner.process(ch, None, from, to)?;
                let out = &inner.out_buf[..produced * ch];
                let room = self.out_total - self.emitted;
                self.emitted += emit(out, ch, &mut inner.to_trim, room, sink)?;
            }
        }
        Ok(())
    }

    /// Flushes the last partial chunk and the resampler's delay, so that exactly
    /// `ceil(total_in * to / from)` frames have been delivered.
    pub fn finish(
        mut self,
        sink: &mut impl FnMut(&[f32]) -> Result<(), FormatError>,
    ) -> Result<(), FormatError> {
        let ch = self.channels;
        let (from, to) = (self.from, self.to);
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        // The pending partial chunk first (if any), then silence until the total is reached.
        let mut partial = inner.in_frames;
        let mut rounds = 0;
        while self.emitted < self.out_total {
            let produced = inner.process(ch, Some(partial), from, to)?;
            partial = 0;
            let out = &inner.out_buf[..produced * ch];
            let room = self.out_total - self.emitted;
            self.emitted += emit(out, ch, &mut inner.to_trim, room, sink)?;
            rounds += 1;
            if rounds > 1_000 {
                return Err(FormatError::Resample {
                    from,
                    to,
                    reason: "the resampler stopped producing output".into(),
                });
            }
        }
        Ok(())
    }
}

impl Inner {
    /// Runs one chunk (`partial`: frames of `in_buf` that are valid; `None` = all of them) and
    /// returns the number of frames produced into `out_buf`.
    fn process(
        &mut self,
        ch: usize,
        partial: Option<usize>,
        from: u32,
        to: u32,
    ) -> Result<usize, FormatError> {
        let fail = |reason: String| FormatError::Resample { from, to, reason };
        let out_frames = self.out_buf.len() / ch;
        let input = InterleavedSlice::new(&self.in_buf[..], ch, self.chunk_in)
            .map_err(|e| fail(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(&mut self.out_buf[..], ch, out_frames)
            .map_err(|e| fail(e.to_string()))?;
        let indexing = partial.map(|n| Indexing::new().partial_len(n));
        let (_, produced) = self
            .resampler
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| fail(e.to_string()))?;
        self.in_frames = 0;
        Ok(produced)
    }
}

/// Drops what is left of the delay from `out`, then hands at most `room` frames to `sink`.
/// Returns the frames handed over.
fn emit(
    out: &[f32],
    ch: usize,
    to_trim: &mut usize,
    room: u64,
    sink: &mut impl FnMut(&[f32]) -> Result<(), FormatError>,
) -> Result<u64, FormatError> {
    let frames = out.len() / ch;
    let skip = (*to_trim).min(frames);
    *to_trim -= skip;
    let take = ((frames - skip) as u64).min(room) as usize;
    if take > 0 {
        sink(&out[skip * ch..(skip + take) * ch])?;
    }
    Ok(take as u64)
}

fn to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

#[cfg(test)]
mod tests {
    use refrain_model::audio::FFT_RESAMPLER_MAX_BLOCK;

    use super::*;

    /// Resamples `input` (mono) in blocks of `block` samples and returns the output.
    fn run(from: u32, to: u32, input: &[i16], block: usize) -> Vec<f32> {
        let mut r = StreamResampler::new(from, to, 1, input.len() as u64).unwrap();
        let mut out = Vec::new();
        let mut sink = |s: &[f32]| {
            out.extend_from_slice(s);
            Ok(())
        };
        for chunk in input.chunks(block) {
            r.push(chunk, &mut sink).unwrap();
        }
        r.finish(&mut sink).unwrap();
        out
    }

    fn sine(rate: u32, freq: f64, frames: usize) -> Vec<i16> {
        (0..frames)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (0.5 * (2.0 * std::f64::consts::PI * freq * t).sin() * 32767.0) as i16
            })
            .collect()
    }

    #[test]
    fn output_length_is_exact_and_aligned() {
        for (from, to, frames, block) in [
            (44_100, 48_000, 44_100, 1000),
            (44_100, 48_000, 1, 7),
            (44_100, 48_000, 5_000, 5_000),
            (22_050, 48_000, 3_333, 512),
            (44_101, 48_000, 10_000, 999),
            (176_401, 48_000, 20_000, 4096),
            (48_000, 48_000, 1_234, 100),
        ] {
            let input = sine(from, 1_000.0, frames);
            let out = run(from, to, &input, block);
            let want = (frames as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
            assert_eq!(out.len(), want, "{from} -> {to}, {frames} frames");
            if frames >= 5_000 && from <= FFT_RESAMPLER_MAX_BLOCK {
                // Aligned: the resampled sine matches the analytic sine at the new rate (away
                // from the edges, where the band-limited filter rings).
                let mut max_err = 0f64;
                for (i, &y) in out.iter().enumerate().skip(500).take(want - 1000) {
                    let t = i as f64 / f64::from(to);
                    let x = 0.5 * (2.0 * std::f64::consts::PI * 1_000.0 * t).sin();
                    max_err = max_err.max((f64::from(y) - x).abs());
                }
                assert!(max_err < 2e-3, "{from} -> {to}: max error {max_err}");
            }
        }
    }
}
