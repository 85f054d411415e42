//! Audio in and out of the pipeline: decoding user-supplied reference audio, resampling, the two
//! reference preprocessing paths, and the final 16-bit WAV.
//!
//! Why this module exists: DiffRhythm touches raw audio in exactly three places, and each has a
//! precise recipe in the reference implementation (`shared/reference/diffrhythm-inference.md`)
//! that the Rust port has to reproduce without Python, librosa or torchaudio:
//!
//! * **Style reference** (§3, `get_style_prompt(wav_path)`): the uploaded song must last at least
//!   10 s; a 10 s window starting at `floor(duration/2) - 5` s is loaded as 24 kHz mono and fed to
//!   MuQ-MuLan. See [`style_clip`].
//! * **Edit-mode reference song** (§1.4, `get_reference_latent`): resampled to 44.1 kHz, forced to
//!   stereo and peak-normalised to −6 dBFS before the VAE encoder. See [`reference_song`].
//! * **Output** (§6.4): the decoded song is divided by its global peak (over all samples of both
//!   channels), clamped, scaled by 32767, truncated to `i16` and saved as a 44.1 kHz stereo WAV.
//!   See [`peak_normalise_to_i16`], [`write_wav_i16`] and [`wav_bytes_i16`]. When several variants
//!   are generated, call [`peak_normalise_to_i16`] once per variant: the reference normalises every
//!   output on its own peak.
//!
//! Decoding is done with symphonia (WAV, MP3, FLAC; the container is sniffed from the bytes, a
//! file extension is only a hint), resampling with rubato, WAV writing with hound.
//!
//! # Where this deviates from the reference
//!
//! * **Resampler.** The reference resamples with librosa (`soxr_hq`, style path) and
//!   `torchaudio.transforms.Resample` (windowed sinc, edit path). Here both use rubato: the
//!   synchronous FFT resampler (`rubato::Fft`, Blackman-Harris² window, delay removed exactly)
//!   for every rate pair whose reduced ratio `rate / gcd` is at most 131072 on both sides (which,
//!   for the 24 kHz and 44.1 kHz targets, is every source rate up to 131072 Hz and every common
//!   higher rate), and rubato's asynchronous windowed-sinc resampler (256 taps, cubic
//!   interpolation) for the remaining exotic pairs; that fallback may be offset by a fraction of
//!   a sample. Both are band-limited and high quality, but the samples are not bit-identical to
//!   soxr's or torchaudio's; expect differences near the filter transition band and in the
//!   first/last few milliseconds (edge handling).
//! * **Style clip duration.** The reference takes the duration of an MP3 from `mutagen` (header
//!   estimate) and of WAV/FLAC from the file header; here it is always the decoded frame count
//!   divided by the sample rate (with gapless trimming of encoder delay/padding for MP3). The
//!   crop offset `floor(duration/2) - seconds/2` is computed, as in the reference, on that
//!   original-rate duration, and the crop is taken at the original rate before resampling
//!   (librosa's `offset`/`duration` semantics), then padded/truncated to exactly
//!   `seconds * sample_rate` samples.
//! * **Non-finite samples.** NaN or infinite samples (possible in float WAVs, or from a broken
//!   model) are replaced by 0 when decoding and are ignored/written as 0 by
//!   [`peak_normalise_to_i16`]. A silent song (peak 0) is written as zeros; the reference would
//!   divide by zero. A silent edit-mode reference is an error ([`AudioError::Silent`]).
//! * **Float sources are not clipped.** Decoded samples are nominally in `[-1, 1]`; a float WAV may
//!   exceed that range and is passed through unchanged, as librosa/torchaudio do.
//! * **Limits.** [`decode`] stops and fails with [`AudioError::TooLong`] as soon as more than
//!   `max_seconds` have been decoded, and rejects streams with more than [`MAX_CHANNELS`] channels
//!   or a sample rate above [`MAX_SAMPLE_RATE`], to bound memory. Truncated streams decode up to
//!   the truncation point; undecodable packets in the middle of a stream are skipped (as media
//!   players do).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Cursor, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rubato::audioadapter_buffers::direct::SequentialSliceOfVecs;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters, WindowFunction,
};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

/// Sample rate of the VAE (input of the encoder, output of the decoder), in Hz.
pub const VAE_SAMPLE_RATE: u32 = 44_100;
/// Sample rate MuQ-MuLan expects for the audio style prompt, in Hz.
pub const STYLE_SAMPLE_RATE: u32 = 24_000;
/// Length of the style reference clip, in seconds.
pub const STYLE_CLIP_SECONDS: u32 = 10;
/// Peak level of the edit-mode reference song after normalisation, in dBFS.
pub const REFERENCE_PEAK_DBFS: f32 = -6.0;
/// Streams with more channels than this are rejected by [`decode`] (memory bound).
pub const MAX_CHANNELS: usize = 16;
/// Streams with a higher sample rate than this (in Hz) are rejected by [`decode`].
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Everything that can go wrong while reading, converting or writing audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The bytes are not a recognised container, or the codec is not supported.
    #[error("unsupported or unrecognised audio format (WAV, MP3 and FLAC are accepted): {0}")]
    UnsupportedFormat(String),
    /// The container was recognised but the data could not be decoded.
    #[error("the audio data could not be decoded: {0}")]
    Undecodable(String),
    /// The container holds no audio track.
    #[error("the file contains no audio track")]
    NoAudioTrack,
    /// No input bytes, or no audio samples in the stream.
    #[error("the audio is empty (no samples)")]
    Empty,
    /// Shorter than a required minimum.
    #[error(
        "the audio is too short: at least {needed_seconds:.2} s are needed, it lasts {actual_seconds:.2} s"
    )]
    TooShort {
        needed_seconds: f64,
        actual_seconds: f64,
    },
    /// Longer than the caller's limit; decoding stopped at `decoded_seconds`.
    #[error(
        "the audio is too long: at most {max_seconds:.2} s are accepted, it lasts at least {decoded_seconds:.2} s"
    )]
    TooLong {
        max_seconds: f64,
        decoded_seconds: f64,
    },
    /// All samples are zero, so the audio cannot be peak-normalised.
    #[error("the audio is silent (every sample is zero), so it cannot be peak-normalised")]
    Silent,
    /// A file system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The resampler could not be built or failed.
    #[error("resampling from {from} Hz to {to} Hz failed: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    /// WAV encoding failed (in memory).
    #[error("WAV encoding failed: {0}")]
    Encode(String),
    /// The caller passed inconsistent arguments (a programming error, not a user error).
    #[error("invalid audio argument: {0}")]
    InvalidArgument(String),
}

impl AudioError {
    fn io(path: &Path, source: io::Error) -> Self {
        AudioError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Decoded audio: planar `f32` samples, one vector per channel, all of the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl Decoded {
    /// Duration in seconds (`frames / sample_rate`; 0 when the rate is 0).
    pub fn duration_seconds(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.frames() as f64 / f64::from(self.sample_rate)
    }

    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Checks the invariants other functions rely on and returns the frame count.
    fn checked_frames(&self) -> Result<usize, AudioError> {
        if self.sample_rate == 0 {
            return Err(AudioError::InvalidArgument("sample rate is 0".into()));
        }
        let frames = self.frames();
        if let Some(bad) = self.channels.iter().position(|c| c.len() != frames) {
            return Err(AudioError::InvalidArgument(format!(
                "channel {bad} has {} samples, channel 0 has {frames}",
                self.channels[bad].len()
            )));
        }
        if frames == 0 {
            return Err(AudioError::Empty);
        }
        Ok(frames)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decode WAV/MP3/FLAC from memory. The format is sniffed from the bytes; `hint` is an optional
/// file extension (`"mp3"`, `".flac"`, ...) used only to try the likely reader first.
///
/// Fails with [`AudioError::TooLong`] as soon as more than `max_seconds` of audio have been
/// decoded (pass `f64::INFINITY` for no limit).
pub fn decode(bytes: &[u8], hint: Option<&str>, max_seconds: f64) -> Result<Decoded, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    decode_source(Box::new(Cursor::new(bytes)), hint, max_seconds, None)
}

/// Decode a WAV/MP3/FLAC file; the extension is used as a hint. See [`decode`].
pub fn decode_file(path: &Path, max_seconds: f64) -> Result<Decoded, AudioError> {
    let file = File::open(path).map_err(|e| AudioError::io(path, e))?;
    let len = file.metadata().map_err(|e| AudioError::io(path, e))?.len();
    if len == 0 {
        return Err(AudioError::Empty);
    }
    let ext = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), ext, max_seconds, Some(path))
}

fn decode_source<'s>(
    source: Box<dyn MediaSource + 's>,
    hint: Option<&str>,
    max_seconds: f64,
    path: Option<&Path>,
) -> Result<Decoded, AudioError> {
    if max_seconds.is_nan() || max_seconds < 0.0 {
        return Err(AudioError::InvalidArgument(format!(
            "max_seconds must be >= 0, got {max_seconds}"
        )));
    }
    let map_err = |err: SymphoniaError| map_symphonia_error(err, path);

    let mut probe_hint = Hint::new();
    if let Some(ext) = hint
        .map(|h| h.trim_start_matches('.'))
        .filter(|h| !h.is_empty())
    {
        probe_hint.with_extension(&ext.to_ascii_lowercase());
    }
    let mss = MediaSourceStream::new(source, Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &probe_hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(map_err)?;

    let track = format
        .default_track(TrackType::Audio)
        .ok_or(AudioError::NoAudioTrack)?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or(AudioError::NoAudioTrack)?
        .clone();
    if let Some(n) = params.channels.as_ref().map(|c| c.count()) {
        if n > MAX_CHANNELS {
            return Err(AudioError::UnsupportedFormat(format!(
                "{n} channels (at most {MAX_CHANNELS} are accepted)"
            )));
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(map_err)?;

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut sample_rate: u32 = 0;
    let mut scratch: Vec<Vec<f32>> = Vec::new();
    let mut skipped_packets = 0usize;
    let mut last_decode_error: Option<String> = None;

    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A truncated stream: keep what was decoded so far.
            Err(SymphoniaError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            // A chained stream (new track list): only the first one is used.
            Err(SymphoniaError::ResetRequired) => break,
            Err(err) => return Err(map_err(err)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymphoniaError::DecodeError(msg)) => {
                skipped_packets += 1;
                last_decode_error = Some(msg.to_string());
                continue;
            }
            Err(SymphoniaError::IoError(e)) => {
                skipped_packets += 1;
                last_decode_error = Some(e.to_string());
                continue;
            }
            Err(err) => return Err(map_err(err)),
        };
        if buf.frames() == 0 {
            continue;
        }
        let rate = buf.spec().rate();
        let planes = buf.num_planes();
        if channels.is_empty() {
            if rate == 0 || rate > MAX_SAMPLE_RATE {
                return Err(AudioError::UnsupportedFormat(format!(
                    "a sample rate of {rate} Hz (1 to {MAX_SAMPLE_RATE} Hz are accepted)"
                )));
            }
            if planes == 0 || planes > MAX_CHANNELS {
                return Err(AudioError::UnsupportedFormat(format!(
                    "{planes} channels (1 to {MAX_CHANNELS} are accepted)"
                )));
            }
            sample_rate = rate;
            channels = vec![Vec::new(); planes];
        } else if planes != channels.len() || rate != sample_rate {
            return Err(AudioError::Undecodable(format!(
                "the stream changes format midway ({} ch at {sample_rate} Hz, then {planes} ch at {rate} Hz)",
                channels.len()
            )));
        }
        let total = channels[0].len() + buf.frames();
        if total as f64 > max_seconds * f64::from(sample_rate) {
            return Err(AudioError::TooLong {
                max_seconds,
                decoded_seconds: total as f64 / f64::from(sample_rate),
            });
        }
        buf.copy_to_vecs_planar::<f32>(&mut scratch);
        for (dst, src) in channels.iter_mut().zip(&scratch) {
            dst.extend(src.iter().map(|&x| if x.is_finite() { x } else { 0.0 }));
        }
    }

    if channels.first().is_none_or(Vec::is_empty) {
        return Err(match last_decode_error {
            Some(msg) => AudioError::Undecodable(format!(
                "no packet could be decoded ({skipped_packets} failed, last error: {msg})"
            )),
            None => AudioError::Empty,
        });
    }
    Ok(Decoded {
        sample_rate,
        channels,
    })
}

fn map_symphonia_error(err: SymphoniaError, path: Option<&Path>) -> AudioError {
    match err {
        SymphoniaError::Unsupported(what) => AudioError::UnsupportedFormat(what.to_string()),
        SymphoniaError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::Undecodable("the data ends unexpectedly (truncated file?)".into())
        }
        SymphoniaError::IoError(e) => match path {
            Some(path) => AudioError::io(path, e),
            None => AudioError::Undecodable(e.to_string()),
        },
        other => AudioError::Undecodable(other.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Resampling
// ---------------------------------------------------------------------------------------------

/// Largest reduced-ratio block (`rate / gcd(from, to)`) handled by the FFT resampler. With the
/// pipeline's targets (24000 and 44100 Hz) every source rate up to this value, however odd
/// (44101 Hz, say), takes the FFT path; rate pairs beyond it use the asynchronous sinc resampler.
const FFT_MAX_BLOCK: u32 = 131_072;
/// Minimum FFT chunk size in input frames (one sub-chunk: a long filter, a sharp cutoff).
const FFT_CHUNK: usize = 2048;

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

    let mut resampler = make_resampler(from, to, nch).map_err(&fail)?;
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

fn make_resampler(from: u32, to: u32, nch: usize) -> Result<Box<dyn Resampler<f32>>, String> {
    let g = gcd(from, to);
    let (min_in, min_out) = (from / g, to / g);
    if min_in.max(min_out) <= FFT_MAX_BLOCK {
        // Use an even number of minimal blocks so that both FFT sizes are even: rubato trims a
        // delay of `fft_size_out / 2` whole frames, which is half a frame short when it is odd.
        let blocks = FFT_CHUNK.div_ceil(min_in as usize).next_multiple_of(2);
        let fft = Fft::<f32>::new_custom(
            from as usize,
            to as usize,
            blocks * min_in as usize,
            1,
            nch,
            WindowFunction::BlackmanHarris2,
            FixedSync::Both,
        )
        .map_err(|e| e.to_string())?;
        Ok(Box::new(fft))
    } else {
        let params = SincInterpolationParameters::new(256, WindowFunction::BlackmanHarris2)
            .oversampling_factor(256);
        let sinc = Async::<f32>::new_sinc(
            f64::from(to) / f64::from(from),
            1.0,
            &params,
            1024,
            nch,
            FixedAsync::Input,
        )
        .map_err(|e| e.to_string())?;
        Ok(Box::new(sinc))
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

// ---------------------------------------------------------------------------------------------
// Reference preprocessing
// ---------------------------------------------------------------------------------------------

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

/// Largest finite absolute value (0 when there is none).
fn finite_peak<'a>(samples: impl Iterator<Item = &'a f32>) -> f32 {
    samples
        .filter(|x| x.is_finite())
        .fold(0.0f32, |peak, &x| peak.max(x.abs()))
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// The reference's output conversion (`infer.py`): divide by the global peak of `|x|` over all
/// samples of both channels, clamp to `[-1, 1]`, multiply by 32767 and cast to `i16` truncating
/// toward zero (all in `f32`, as torch does). Returns interleaved `L R L R ...`.
///
/// A silent song (peak 0) becomes zeros; non-finite samples are ignored for the peak and written
/// as 0. If the channels differ in length the shorter is padded with zeros. Normalise each
/// generated variant separately: the reference normalises every output on its own peak.
pub fn peak_normalise_to_i16(left: &[f32], right: &[f32]) -> Vec<i16> {
    let peak = finite_peak(left.iter().chain(right));
    #[inline]
    fn convert(x: f32, peak: f32) -> i16 {
        if peak > 0.0 && x.is_finite() {
            ((x / peak).clamp(-1.0, 1.0) * 32767.0) as i16
        } else {
            0
        }
    }
    let frames = left.len().max(right.len());
    let common = left.len().min(right.len());
    let mut out = vec![0i16; frames * 2];
    // The common part in one branch-free pass (the hot loop: millions of samples).
    for ((o, &l), &r) in out
        .chunks_exact_mut(2)
        .zip(&left[..common])
        .zip(&right[..common])
    {
        o[0] = convert(l, peak);
        o[1] = convert(r, peak);
    }
    // A longer channel continues against silence in the other.
    for i in common..frames {
        out[2 * i] = left.get(i).map_or(0, |&x| convert(x, peak));
        out[2 * i + 1] = right.get(i).map_or(0, |&x| convert(x, peak));
    }
    out
}

/// Write interleaved 16-bit PCM as a WAV file, atomically: the data goes to a temporary file in
/// the same directory, which is flushed, fsynced and then renamed over `path`, so a reader never
/// sees a half-written file. An existing file at `path` is replaced. On failure the temporary
/// file is removed.
pub fn write_wav_i16(
    path: &Path,
    interleaved: &[i16],
    channels: u16,
    sample_rate: u32,
) -> Result<(), AudioError> {
    check_wav_args(interleaved, channels, sample_rate)?;
    let file_name = path.file_name().ok_or_else(|| {
        AudioError::InvalidArgument(format!("{} has no file name", path.display()))
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp_path = dir.join(tmp_name);

    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(|e| AudioError::io(&tmp_path, e))?;
    let guard = TempFileGuard(Some(tmp_path.clone()));

    let mut writer = BufWriter::with_capacity(1 << 16, file);
    write_wav_into(&mut writer, interleaved, channels, sample_rate).map_err(|e| match e {
        hound::Error::IoError(e) => AudioError::io(&tmp_path, e),
        other => AudioError::Encode(other.to_string()),
    })?;
    let file = writer
        .into_inner()
        .map_err(|e| AudioError::io(&tmp_path, e.into_error()))?;
    file.sync_all().map_err(|e| AudioError::io(&tmp_path, e))?;
    drop(file);
    fs::rename(&tmp_path, path).map_err(|e| AudioError::io(path, e))?;
    guard.disarm();

    // Make the rename itself durable. Best effort: not every file system supports it.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The same WAV as [`write_wav_i16`], in memory.
pub fn wav_bytes_i16(
    interleaved: &[i16],
    channels: u16,
    sample_rate: u32,
) -> Result<Vec<u8>, AudioError> {
    check_wav_args(interleaved, channels, sample_rate)?;
    let mut cursor = Cursor::new(Vec::with_capacity(WAV_HEADER_MAX + interleaved.len() * 2));
    write_wav_into(&mut cursor, interleaved, channels, sample_rate)
        .map_err(|e| AudioError::Encode(e.to_string()))?;
    Ok(cursor.into_inner())
}

/// Upper bound of hound's header size (WAVEFORMATEXTENSIBLE).
const WAV_HEADER_MAX: usize = 80;

fn check_wav_args(interleaved: &[i16], channels: u16, sample_rate: u32) -> Result<(), AudioError> {
    if channels == 0 || sample_rate == 0 {
        return Err(AudioError::InvalidArgument(format!(
            "a WAV needs at least one channel and a positive rate, got {channels} ch at {sample_rate} Hz"
        )));
    }
    if !interleaved.len().is_multiple_of(usize::from(channels)) {
        return Err(AudioError::InvalidArgument(format!(
            "{} interleaved samples are not a whole number of {channels}-channel frames",
            interleaved.len()
        )));
    }
    if (interleaved.len() as u64) * 2 + WAV_HEADER_MAX as u64 > u64::from(u32::MAX) {
        return Err(AudioError::InvalidArgument(format!(
            "{} samples do not fit in a WAV file (4 GiB limit)",
            interleaved.len()
        )));
    }
    Ok(())
}

fn write_wav_into<W: Write + Seek>(
    sink: W,
    interleaved: &[i16],
    channels: u16,
    sample_rate: u32,
) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(sink, spec)?;
    for block in interleaved.chunks(1 << 16) {
        // `check_wav_args` bounds the total length well below u32::MAX.
        let mut samples = writer.get_i16_writer(block.len() as u32);
        for &s in block {
            samples.write_sample(s);
        }
        samples.flush()?;
    }
    writer.finalize()
}

/// Removes the temporary file on drop unless disarmed (after the rename).
struct TempFileGuard(Option<PathBuf>);

impl TempFileGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
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
                assert!((from / g).max(to / g) <= FFT_MAX_BLOCK, "{from}->{to}");
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
            assert!((from / g).max(to / g) <= FFT_MAX_BLOCK);
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
        assert!(from / gcd(from, to) > FFT_MAX_BLOCK);
        let err = max_aligned_error(from, to, 100_000);
        assert!(err < 0.1, "max error {err}");
    }

    #[test]
    fn decoded_helpers() {
        let d = Decoded {
            sample_rate: 0,
            channels: vec![vec![0.0; 10]],
        };
        assert_eq!(d.duration_seconds(), 0.0);
        assert!(matches!(
            d.checked_frames(),
            Err(AudioError::InvalidArgument(_))
        ));
        let d = Decoded {
            sample_rate: 8000,
            channels: vec![vec![0.0; 10], vec![0.0; 9]],
        };
        assert_eq!(d.frames(), 10);
        assert!(matches!(
            d.checked_frames(),
            Err(AudioError::InvalidArgument(_))
        ));
        let d = Decoded {
            sample_rate: 8000,
            channels: Vec::new(),
        };
        assert_eq!(d.frames(), 0);
        assert!(matches!(d.checked_frames(), Err(AudioError::Empty)));
    }

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

    #[test]
    fn invalid_limits_and_arguments_are_reported() {
        let err = decode(b"RIFF", None, f64::NAN).unwrap_err();
        assert!(matches!(err, AudioError::InvalidArgument(_)), "{err:?}");
        let err = decode(b"RIFF", None, -1.0).unwrap_err();
        assert!(matches!(err, AudioError::InvalidArgument(_)), "{err:?}");
        assert!(matches!(
            wav_bytes_i16(&[], 0, 44_100),
            Err(AudioError::InvalidArgument(_))
        ));
        assert!(matches!(
            wav_bytes_i16(&[], 2, 0),
            Err(AudioError::InvalidArgument(_))
        ));
        let d = Decoded {
            sample_rate: 8000,
            channels: vec![vec![0.0; 100_000]],
        };
        assert!(matches!(
            style_clip(&d, 0, 10),
            Err(AudioError::InvalidArgument(_))
        ));
    }

    #[test]
    fn temp_file_guard_removes_the_file_unless_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tmp");
        let b = dir.path().join("b.tmp");
        fs::write(&a, b"x").unwrap();
        fs::write(&b, b"x").unwrap();
        drop(TempFileGuard(Some(a.clone())));
        TempFileGuard(Some(b.clone())).disarm();
        assert!(!a.exists());
        assert!(b.exists());
    }

    #[test]
    fn write_wav_needs_a_file_name() {
        let err = write_wav_i16(Path::new("/"), &[0, 0], 2, 44_100).unwrap_err();
        assert!(matches!(err, AudioError::InvalidArgument(_)), "{err:?}");
    }
}
