//! Decoding user-supplied audio (WAV, MP3, FLAC) into planar `f32` with symphonia, with the
//! memory bounds of the service (duration, channel count, sample rate) enforced while decoding.

use std::fs::File;
use std::io::{self, Cursor};
use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::{AudioError, Decoded, MAX_CHANNELS, MAX_SAMPLE_RATE};

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

/// Runs [`decode_inner`], turning a panic of the decoder into [`AudioError::Undecodable`].
/// symphonia trusts some header fields: a WAV whose `fmt ` chunk makes `channels ×
/// bytes per sample` overflow panics in builds with overflow checks (found by
/// `model/tests/fuzz_inputs.rs`). A client's file must get a 400, not take a worker down.
fn decode_source<'s>(
    source: Box<dyn MediaSource + 's>,
    hint: Option<&str>,
    max_seconds: f64,
    path: Option<&Path>,
) -> Result<Decoded, AudioError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        decode_inner(source, hint, max_seconds, path)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the decoder failed".into());
        Err(AudioError::Undecodable(format!(
            "malformed file (the decoder stopped: {why})"
        )))
    })
}

fn decode_inner<'s>(
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
    let mut non_finite = 0usize;
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
            non_finite += src.iter().filter(|x| !x.is_finite()).count();
            dst.extend_from_slice(src);
        }
    }
    if non_finite > 0 {
        return Err(AudioError::NonFinite(non_finite));
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
