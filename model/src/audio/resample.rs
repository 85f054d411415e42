//! Band-limited sample-rate conversion with rubato. [`new_resampler`] is the one place where the
//! resampler is chosen and configured (FFT for ordinary rate pairs, windowed sinc for exotic
//! ones); [`resample`] runs it over whole clips for the pipeline, and `refrain-formats` streams
//! through it for the Opus path, so both resample the same way.

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, ResamplerConstructionError,
    SincInterpolationParameters, WindowFunction,
};

use super::AudioError;

/// Largest reduced-ratio block (`rate / gcd(from, to)`) handled by the FFT resampler. With the
/// pipeline's targets (24000 and 44100 Hz) every source rate up to this value, however odd
/// (44101 Hz, say), takes the FFT path, which is aligned to the sample; rate pairs beyond it use
/// the asynchronous sinc resampler, whose alignment is only within about a sample.
pub const FFT_RESAMPLER_MAX_BLOCK: u32 = 131_072;
/// Minimum FFT chunk size in input frames (one sub-chunk: a long filter, a sharp cutoff).
const FFT_CHUNK: usize = 2048;
/// Input chunk of the sinc resampler, in frames.
const SINC_CHUNK: usize = 1024;

/// Band-limited resampling of every channel from `from` Hz to `to` Hz (rubato; see the module
/// docs). The output has `ceil(frames * to / from)` frames, aligned with the input (the
/// resampler's delay is removed). Identity (a copy) when the rates match.
pub fn resample(channels: &[Vec<f32>], from: u32, to: u32) -> Result<Vec<Vec<f32>>, AudioError> {
    let fail = |reason: String| AudioError::Resample { from, to, reason };
    if from == 0 || to == 0 {
        return Err(fail("sample rates must be positive".into()));
    }
    let Some(first) = channels.first() else {
        return Ok(Vec::new());
    };
    let frames = first.len();
    if let Some(bad) = channels.iter().position(|c| c.len() != frames) {
        return Err(AudioError::InvalidArgument(format!(
            "channel {bad} has {} samples, channel 0 has {frames}",
            channels[bad].len()
        )));
    }
    if from == to {
        return Ok(channels.to_vec());
    }
    let nch = channels.len();
    if frames == 0 {
        return Ok(vec![Vec::new(); nch]);
    }

    let mut resampler = new_resampler(from, to, nch).map_err(|e| fail(e.to_string()))?;
    let input =
        SequentialSliceOfVecs::new(channels, nch, frames).map_err(|e| fail(e.to_string()))?;
    let out_len = resampler.process_all_needed_output_len(frames);
    let mut output = vec![vec![0.0f32; out_len]; nch];
    let produced = {
        let mut out_adapter = SequentialSliceOfVecs::new_mut(&mut output, nch, out_len)
            .map_err(|e| fail(e.to_string()))?;
        let (_, produced) = resampler
            .process_all_into_buffer(&input, &mut out_adapter, frames, None)
            .map_err(|e| fail(e.to_string()))?;
        produced
    };
    // Exactly ceil(frames * to / from) frames (rubato's own count goes through an f64 ratio and
    // can be one frame longer).
    let want = (frames as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    for channel in &mut output {
        channel.truncate(produced.min(want));
        channel.resize(want, 0.0);
        channel.shrink_to_fit();
    }
    Ok(output)
}

/// The resampler for `channels` channels from `from` Hz to `to` Hz, as the pipeline uses it:
/// rubato's synchronous FFT resampler (Blackman-Harris² window, fixed input and output chunks)
/// when the reduced ratio fits in [`FFT_RESAMPLER_MAX_BLOCK`], else its asynchronous
/// windowed-sinc resampler (256 taps, 256× oversampling, 1024-frame input chunks). The caller
/// drives it and removes its `output_delay()`; [`resample`] does so for whole clips.
pub fn new_resampler(
    from: u32,
    to: u32,
    channels: usize,
) -> Result<Box<dyn Resampler<f32>>, ResamplerConstructionError> {
    let g = gcd(from, to);
    let (min_in, min_out) = (from / g, to / g);
    if min_in.max(min_out) <= FFT_RESAMPLER_MAX_BLOCK {
        // Use an even number of minimal blocks so that both FFT sizes are even: rubato trims a
        // delay of `fft_size_out / 2` whole frames, which is half a frame short when it is odd.
        let blocks = FFT_CHUNK.div_ceil(min_in as usize).next_multiple_of(2);
        let fft = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            blocks * min_in as usize,
            1,
            channels,
            WindowFunction::BlackmanHarris2,
            FixedSync::Both,
        )?;
        Ok(Box::new(fft))
    } else {
        let params = SincInterpolationParameters::new(256, WindowFunction::BlackmanHarris2)
            .oversampling_factor(256);
        let sinc = Async::<f32>::new_sinc(
            f64::from(to) / f64::from(from),
            1.0,
            &params,
            SINC_CHUNK,
            channels,
            FixedAsync::Input,
        )?;
        Ok(Box::new(sinc))
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn gcd_of_common_rates() {
        assert_eq!(gcd(44_100, 48_000), 300);
        assert_eq!(gcd(44_100, 24_000), 300);
        assert_eq!(gcd(24_000, 24_000), 24_000);
        assert_eq!(gcd(44_101, 24_000), 1);
    }

    #[test]
    fn fft_sizes_are_even_for_every_common_pair() {
        // The half-frame delay fix relies on an even number of minimal blocks.
        for from in [
            8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 96_000,
        ] {
            for to in [24_000, 44_100] {
                let g = gcd(from, to);
                let blocks = FFT_CHUNK.div_ceil((from / g) as usize).next_multiple_of(2);
                assert_eq!(blocks % 2, 0);
                assert!(
                    (from / g).max(to / g) <= FFT_RESAMPLER_MAX_BLOCK,
                    "{from}->{to}"
                );
            }
        }
    }

    fn max_aligned_error(from: u32, to: u32, frames: usize) -> f32 {
        let x = sine(1000.0, from, frames);
        let y = resample(&[x.clone(), x], from, to).unwrap();
        assert_eq!(y.len(), 2);
        assert_eq!(y[0], y[1]);
        let n = y[0].len();
        assert_eq!(
            n as u64,
            (frames as u64 * u64::from(to)).div_ceil(u64::from(from))
        );
        let ideal = sine(1000.0, to, n);
        (n / 4..3 * n / 4)
            .map(|i| (y[0][i] - ideal[i]).abs())
            .fold(0.0f32, f32::max)
    }

    #[test]
    fn odd_source_rates_still_take_the_exact_fft_path() {
        // 44101 Hz shares no factor with 24000 Hz: large FFT blocks, but still exact alignment.
        for (from, to) in [(44_101, 24_000), (44_101, 44_100), (24_000, 44_101)] {
            let g = gcd(from, to);
            assert!((from / g).max(to / g) <= FFT_RESAMPLER_MAX_BLOCK);
            let err = max_aligned_error(from, to, 30_000);
            assert!(err < 1e-4, "{from}->{to}: max error {err}");
        }
    }

    #[test]
    fn exotic_rate_pairs_use_the_sinc_resampler() {
        // 200003 Hz (prime): beyond the FFT block limit. A 1 kHz sine at 0.5 moves by at most
        // 0.13 per output frame at 24 kHz, so an error below 0.1 means less than a frame of
        // misalignment (the sinc path can be off by a fraction of a frame).
        let (from, to) = (200_003, 24_000);
        assert!(from / gcd(from, to) > FFT_RESAMPLER_MAX_BLOCK);
        let err = max_aligned_error(from, to, 100_000);
        assert!(err < 0.1, "max error {err}");
    }
}
