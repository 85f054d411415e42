//! The two reference preprocessing paths of DiffRhythm: the style clip for MuQ-MuLan and the
//! edit-mode reference song for the VAE encoder (see the `audio` module docs for the recipes).

use super::{finite_peak, resample, AudioError, Decoded, REFERENCE_PEAK_DBFS};

/// The style reference clip for MuQ-MuLan: mono (mean of the channels), `seconds` long, at
/// `sample_rate` (24000 in the pipeline), exactly `seconds * sample_rate` samples.
///
/// Mirrors `librosa.load(sr=24000, mono=True, offset=start, duration=10)` with
/// `start = floor(duration/2) - 5` (in general `floor(duration/2) - seconds/2`, clamped at 0):
/// the crop is computed on the original duration and taken at the original rate, then mixed to
/// mono and resampled. Fails with [`AudioError::TooShort`] when the audio is shorter than
/// `seconds`.
pub fn style_clip(
    decoded: &Decoded,
    sample_rate: u32,
    seconds: u32,
) -> Result<Vec<f32>, AudioError> {
    if sample_rate == 0 || seconds == 0 {
        return Err(AudioError::InvalidArgument(format!(
            "style clip needs a positive rate and length, got {sample_rate} Hz and {seconds} s"
        )));
    }
    let frames = decoded.checked_frames()?;
    let duration = decoded.duration_seconds();
    if duration < f64::from(seconds) {
        return Err(AudioError::TooShort {
            needed_seconds: f64::from(seconds),
            actual_seconds: duration,
        });
    }
    let native = f64::from(decoded.sample_rate);
    let start_seconds = ((duration / 2.0).floor() - f64::from(seconds) / 2.0).max(0.0);
    // soundfile's seek(int(offset * sr)) and read(frames=int(duration * sr)), as librosa does.
    let start = ((start_seconds * native) as usize).min(frames);
    let len = (f64::from(seconds) * native) as usize;
    let end = start.saturating_add(len).min(frames);

    let n = decoded.channels.len() as f32;
    let mut mono: Vec<f32> = decoded.channels[0][start..end].to_vec();
    for channel in &decoded.channels[1..] {
        for (m, &x) in mono.iter_mut().zip(&channel[start..end]) {
            *m += x;
        }
    }
    if decoded.channels.len() > 1 {
        for m in &mut mono {
            *m /= n;
        }
    }

    let mut clip = resample(&[mono], decoded.sample_rate, sample_rate)?
        .pop()
        .unwrap_or_default();
    clip.resize(seconds as usize * sample_rate as usize, 0.0);
    Ok(clip)
}

/// The edit-mode reference song, ready for the VAE encoder: resampled to `sample_rate` (44100),
/// forced to stereo (mono is duplicated; of more than two channels the first two are kept) and
/// peak-normalised to −6 dBFS (`x * 10^(-6/20) / max|x|`, peak over both channels).
///
/// Fails with [`AudioError::Silent`] when every sample is zero.
pub fn reference_song(decoded: &Decoded, sample_rate: u32) -> Result<[Vec<f32>; 2], AudioError> {
    decoded.checked_frames()?;
    let kept = decoded.channels.len().min(2);
    let mut resampled = resample(&decoded.channels[..kept], decoded.sample_rate, sample_rate)?;
    let (left, right) = if kept == 1 {
        let mono = resampled.pop().unwrap_or_default();
        (mono.clone(), mono)
    } else {
        let right = resampled.pop().unwrap_or_default();
        let left = resampled.pop().unwrap_or_default();
        (left, right)
    };
    let peak = finite_peak(left.iter().chain(&right));
    if peak == 0.0 {
        return Err(AudioError::Silent);
    }
    let gain = 10f32.powf(REFERENCE_PEAK_DBFS / 20.0);
    let scale = |v: Vec<f32>| -> Vec<f32> {
        v.into_iter()
            .map(|x| if x.is_finite() { x * gain / peak } else { 0.0 })
            .collect()
    };
    Ok([scale(left), scale(right)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_clip_with_odd_length_uses_half_seconds() {
        // seconds = 7, duration 20 s: start = floor(10) - 3.5 = 6.5 s.
        let rate = 1000;
        let ramp: Vec<f32> = (0..20 * rate).map(|i| i as f32).collect();
        let d = Decoded {
            sample_rate: rate,
            channels: vec![ramp],
        };
        let clip = style_clip(&d, rate, 7).unwrap();
        assert_eq!(clip.len(), 7000);
        assert_eq!(clip[0], 6500.0);
        assert_eq!(clip[6999], 13_499.0);
    }
}
