//! Ogg/Opus encoding: the WAV is resampled to 48 kHz (Opus has no 44.1 kHz mode), cut into
//! 20 ms frames and coded by libopus (music, VBR at the configured bitrate, full complexity),
//! and the packets go to the Ogg muxer with the granule positions RFC 7845 asks for:
//!
//! * pre-skip = the encoder's lookahead (312 samples at 48 kHz), so that decoders drop the
//!   encoder's startup delay;
//! * the granule position after packet k is k × 960 (48 kHz samples, pre-skip included);
//! * the input is padded with silence up to the next whole frame after pre-skip + the real
//!   samples, and the final granule position, pre-skip + the real 48 kHz sample count, tells
//!   decoders to drop that padding (end trimming), so that playback is exactly as long as the
//!   song.

use opus::{Application, Bitrate, Channels, Signal};

use crate::error::FormatError;
use crate::format::AudioFormat;
use crate::ogg_mux::OggOpusMuxer;
use crate::resample::StreamResampler;
use crate::wav::WavInput;

const FORMAT: AudioFormat = AudioFormat::Opus;

/// Opus always runs at 48 kHz here (the granule positions of Ogg Opus count 48 kHz samples).
pub(crate) const OPUS_RATE: u32 = 48_000;

/// 20 ms at 48 kHz.
pub(crate) const FRAME: usize = 960;

/// Input sample rates accepted (all are resampled to 48 kHz unless already there).
const MIN_RATE: u32 = 8_000;
const MAX_RATE: u32 = 192_000;

/// Largest packet libopus is given room for (its recommended maximum).
const MAX_PACKET: usize = 4000;

/// WAV frames read per block.
const BLOCK_FRAMES: usize = 8192;

pub(crate) fn encode(mut input: WavInput<'_>, kbps: u32) -> Result<Vec<u8>, FormatError> {
    let rate = input.sample_rate;
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(FormatError::UnsupportedSampleRate {
            format: FORMAT,
            rate,
            allowed: "Opus takes 8 to 192 kHz (resampled to 48 kHz)",
        });
    }
    let ch = input.channels;
    let fail = |e: opus::Error| FormatError::encoder(FORMAT, e);
    let channels = if ch == 2 {
        Channels::Stereo
    } else {
        Channels::Mono
    };
    let mut encoder = opus::Encoder::new(OPUS_RATE, channels, Application::Audio).map_err(fail)?;
    encoder
        .set_bitrate(Bitrate::Bits(kbps as i32 * 1000))
        .map_err(fail)?;
    encoder.set_signal(Signal::Music).map_err(fail)?;
    encoder.set_vbr(true).map_err(fail)?;
    encoder.set_complexity(10).map_err(fail)?;
    let lookahead = encoder.get_lookahead().map_err(fail)?;
    let pre_skip = u16::try_from(lookahead)
        .map_err(|_| FormatError::encoder(FORMAT, format!("odd lookahead {lookahead}")))?;

    let mut resampler = StreamResampler::new(rate, OPUS_RATE, ch, input.frames)?;
    let real_frames = resampler.out_total();
    let muxer = OggOpusMuxer::new(ch as u8, pre_skip, rate, stream_serial(&input))?;
    let mut packetizer = Packetizer {
        encoder,
        ch,
        fifo: Vec::with_capacity((BLOCK_FRAMES * 2 + FRAME) * ch),
        packet: vec![0; MAX_PACKET],
        packets: 0,
        muxer,
    };
    let mut sink = |samples: &[f32]| packetizer.push(samples);
    let mut blocks = input.blocks(BLOCK_FRAMES);
    while let Some(block) = blocks.next_block()? {
        resampler.push(block, &mut sink)?;
    }
    resampler.finish(&mut sink)?;
    packetizer.finish(u64::from(pre_skip) + real_frames)
}

/// A serial number for the logical stream, derived from the audio's format and length so that
/// the same song always gives the same bytes. Serials only need to differ between streams
/// multiplexed or chained into one physical file, which this crate never produces.
fn stream_serial(input: &WavInput<'_>) -> u32 {
    // FNV-1a over the format and length: cheap, deterministic.
    let mut h: u32 = 0x811c_9dc5;
    for b in input
        .frames
        .to_le_bytes()
        .into_iter()
        .chain(input.sample_rate.to_le_bytes())
        .chain([input.channels as u8])
    {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// Cuts the 48 kHz stream into 20 ms frames, encodes them and hands the packets to the muxer.
struct Packetizer {
    encoder: opus::Encoder,
    ch: usize,
    /// Interleaved samples not yet encoded (less than one frame between calls).
    fifo: Vec<f32>,
    packet: Vec<u8>,
    /// Packets encoded so far.
    packets: u64,
    muxer: OggOpusMuxer,
}

impl Packetizer {
    fn push(&mut self, samples: &[f32]) -> Result<(), FormatError> {
        self.fifo.extend_from_slice(samples);
        let frame_len = FRAME * self.ch;
        let mut pos = 0;
        while self.fifo.len() - pos >= frame_len {
            self.encode_frame(pos)?;
            pos += frame_len;
        }
        self.fifo.drain(..pos);
        Ok(())
    }

    fn encode_frame(&mut self, pos: usize) -> Result<(), FormatError> {
        let frame = &self.fifo[pos..pos + FRAME * self.ch];
        let len = self
            .encoder
            .encode_float(frame, &mut self.packet)
            .map_err(|e| FormatError::encoder(FORMAT, e))?;
        self.packets += 1;
        self.muxer
            .push(self.packet[..len].to_vec(), self.packets * FRAME as u64)
    }

    /// Pads with silence so that the packets cover `final_granule` samples (the encoder's
    /// lookahead must be pushed out too), encodes the rest and ends the stream at
    /// `final_granule`.
    fn finish(mut self, final_granule: u64) -> Result<Vec<u8>, FormatError> {
        let queued = (self.fifo.len() / self.ch) as u64;
        let covered = self.packets * FRAME as u64 + queued;
        let needed = final_granule.max(1).next_multiple_of(FRAME as u64);
        let pad = needed.saturating_sub(covered) as usize;
        self.fifo.resize(self.fifo.len() + pad * self.ch, 0.0);
        self.push(&[])?;
        debug_assert!(self.fifo.is_empty());
        self.muxer.finish(final_granule)
    }
}
