//! MP3 encoding with LAME: constant bitrate at the WAV's own sample rate, streamed block by
//! block, flushed at the end, and finished with a LAME/Info tag in the first frame (encoder
//! delay, padding, frame count) so that decoders trim the silence LAME adds and report the exact
//! duration.

use mp3lame_encoder::{
    max_required_buffer_size, Bitrate, Builder, FlushGap, InterleavedPcm, Mode, MonoPcm, Quality,
    VbrMode,
};

use crate::error::FormatError;
use crate::format::AudioFormat;
use crate::wav::WavInput;

const FORMAT: AudioFormat = AudioFormat::Mp3;

/// Sample rates an MP3 stream can have (MPEG-1, MPEG-2, MPEG-2.5). The WAV's rate is kept
/// (LAME is told not to resample).
const MP3_SAMPLE_RATES: [u32; 9] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];

/// Frames handed to LAME per call.
const BLOCK_FRAMES: usize = 16 * 1152;

/// LAME's quality/speed trade-off (0 best and slowest, 9 worst): 3, the `lame` command's own
/// default. 2 ("-h") measured about 2.4 times slower here (5.8 s instead of 2.4 s for a 285 s
/// song, see the bench) for a difference that is hard to hear at 192 kbps.
const QUALITY: Quality = Quality::VeryNice;

pub(crate) fn encode(mut input: WavInput<'_>, kbps: u32) -> Result<Vec<u8>, FormatError> {
    let rate = input.sample_rate;
    if !MP3_SAMPLE_RATES.contains(&rate) {
        return Err(FormatError::UnsupportedSampleRate {
            format: FORMAT,
            rate,
            allowed: "MP3 takes 8, 11.025, 12, 16, 22.05, 24, 32, 44.1 or 48 kHz",
        });
    }
    if rate < 32_000 && kbps > 160 {
        return Err(FormatError::InvalidBitrate {
            format: FORMAT,
            kbps,
            allowed: format!("at {rate} Hz an MP3 stream has at most 160 kbps"),
        });
    }
    let stereo = input.channels == 2;
    let mut encoder = build_encoder(rate, stereo, kbps)?;

    // CBR: the size is known up front.
    let seconds = input.frames as f64 / f64::from(rate);
    let mut out = Vec::with_capacity((seconds * f64::from(kbps) * 125.0) as usize + 16 * 1024);
    let mut blocks = input.blocks(BLOCK_FRAMES);
    while let Some(block) = blocks.next_block()? {
        let frames = block.len() / if stereo { 2 } else { 1 };
        out.reserve(max_required_buffer_size(frames));
        let written = if stereo {
            encoder.encode_to_vec(InterleavedPcm(block), &mut out)
        } else {
            encoder.encode_to_vec(MonoPcm(block), &mut out)
        };
        written.map_err(|e| FormatError::encoder(FORMAT, e))?;
    }
    // Encode what is still buffered, the last frame padded with silence (the padding is recorded
    // in the tag). `lame_encode_flush`, not `_nogap`: the latter is for chaining another file on
    // the same encoder and leaves the buffered samples out.
    out.reserve(max_required_buffer_size(BLOCK_FRAMES));
    encoder
        .flush_to_vec::<FlushGap>(&mut out)
        .map_err(|e| FormatError::encoder(FORMAT, e))?;

    // LAME put a placeholder frame at the start of the stream; fill in the Info tag now that the
    // totals are known (no ID3v2 tag precedes it). At the lowest bitrates the tag does not fit
    // in a frame and LAME writes neither (the file then plays with LAME's usual delay and
    // padding, about 50 ms, as untagged MP3s do).
    let tag_size = encoder.lame_tag_size();
    if tag_size > 0 {
        let mut tag = Vec::with_capacity(tag_size);
        match encoder.lame_tag_encode_to_vec(&mut tag) {
            Some(len) if len.get() <= out.len() => out[..len.get()].copy_from_slice(&tag),
            _ => {
                return Err(FormatError::encoder(
                    FORMAT,
                    "LAME could not write the Info tag",
                ))
            }
        }
    }
    Ok(out)
}

fn build_encoder(
    rate: u32,
    stereo: bool,
    kbps: u32,
) -> Result<mp3lame_encoder::Encoder, FormatError> {
    let fail = |what: &str, e: mp3lame_encoder::BuildError| {
        FormatError::encoder(FORMAT, format!("{what}: {e}"))
    };
    let mut builder = Builder::new()
        .ok_or_else(|| FormatError::encoder(FORMAT, "LAME could not allocate an encoder"))?;
    builder
        .set_num_channels(if stereo { 2 } else { 1 })
        .map_err(|e| fail("channels", e))?;
    builder
        .set_sample_rate(rate)
        .map_err(|e| fail("sample rate", e))?;
    builder
        .set_output_sample_rate(std::num::NonZeroU32::new(rate))
        .map_err(|e| fail("output sample rate", e))?;
    builder
        .set_mode(if stereo {
            Mode::JointStereo
        } else {
            Mode::Mono
        })
        .map_err(|e| fail("mode", e))?;
    builder
        .set_vbr_mode(VbrMode::Off)
        .map_err(|e| fail("CBR mode", e))?;
    match lame_bitrate(kbps) {
        Some(bitrate) => builder.set_brate(bitrate).map_err(|e| fail("bitrate", e))?,
        None => {
            // 56 kbps is a standard MPEG bitrate that the wrapper's enum lacks: set it directly.
            // SAFETY: `as_ptr` is the live `lame_global_flags` owned by `builder`, not yet
            // initialised with `lame_init_params`, which is when LAME takes settings.
            let code = unsafe { mp3lame_sys::lame_set_brate(builder.as_ptr(), kbps as _) };
            if code < 0 {
                return Err(FormatError::encoder(
                    FORMAT,
                    format!("bitrate: LAME error {code}"),
                ));
            }
        }
    }
    builder
        .set_quality(QUALITY)
        .map_err(|e| fail("quality", e))?;
    builder
        .set_to_write_vbr_tag(true)
        .map_err(|e| fail("Info tag", e))?;
    builder.build().map_err(|e| match e {
        mp3lame_encoder::BuildError::BadBRate => FormatError::InvalidBitrate {
            format: FORMAT,
            kbps,
            allowed: format!("LAME rejects it at {rate} Hz"),
        },
        other => fail("initialisation", other),
    })
}

/// The wrapper's enum for a standard bitrate (`None` for the standard one it lacks, 56 kbps).
fn lame_bitrate(kbps: u32) -> Option<Bitrate> {
    Some(match kbps {
        32 => Bitrate::Kbps32,
        40 => Bitrate::Kbps40,
        48 => Bitrate::Kbps48,
        64 => Bitrate::Kbps64,
        80 => Bitrate::Kbps80,
        96 => Bitrate::Kbps96,
        112 => Bitrate::Kbps112,
        128 => Bitrate::Kbps128,
        160 => Bitrate::Kbps160,
        192 => Bitrate::Kbps192,
        224 => Bitrate::Kbps224,
        256 => Bitrate::Kbps256,
        320 => Bitrate::Kbps320,
        _ => return None,
    })
}
