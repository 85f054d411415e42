//! Reading the generated WAV: one place that checks the header (16-bit PCM, 1 or 2 channels)
//! and streams the samples to the encoders in blocks, turning every hound failure (bad header,
//! truncated data) into a [`FormatError`] instead of a panic.

use std::io::Cursor;

use hound::{SampleFormat, WavReader, WavSamples};

use crate::error::FormatError;

/// An opened WAV whose header has been checked.
pub(crate) struct WavInput<'a> {
    reader: WavReader<Cursor<&'a [u8]>>,
    /// 1 or 2.
    pub channels: usize,
    /// Hz, > 0.
    pub sample_rate: u32,
    /// Sample frames (samples per channel) announced by the data chunk, > 0.
    pub frames: u64,
}

impl<'a> WavInput<'a> {
    /// Parses the header and checks the format. Fails with [`FormatError::NoAudio`] when the
    /// data chunk is empty.
    pub fn open(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if bytes.is_empty() {
            return Err(FormatError::InvalidWav("0 bytes".into()));
        }
        let reader = WavReader::new(Cursor::new(bytes)).map_err(wav_error)?;
        let spec = reader.spec();
        if spec.sample_format != SampleFormat::Int || spec.bits_per_sample != 16 {
            let kind = match spec.sample_format {
                SampleFormat::Int => "PCM",
                SampleFormat::Float => "floating-point",
            };
            return Err(FormatError::UnsupportedWav(format!(
                "{}-bit {kind} samples (only 16-bit PCM is supported)",
                spec.bits_per_sample
            )));
        }
        if !(1..=2).contains(&spec.channels) {
            return Err(FormatError::UnsupportedWav(format!(
                "{} channels (only mono and stereo are supported)",
                spec.channels
            )));
        }
        if spec.sample_rate == 0 {
            return Err(FormatError::InvalidWav("a sample rate of 0 Hz".into()));
        }
        let frames = u64::from(reader.duration());
        if frames == 0 {
            return Err(FormatError::NoAudio);
        }
        Ok(WavInput {
            channels: usize::from(spec.channels),
            sample_rate: spec.sample_rate,
            frames,
            reader,
        })
    }

    /// Reads every sample, checking that the data chunk is complete.
    pub fn validate_samples(mut self) -> Result<(), FormatError> {
        let mut blocks = self.blocks(65_536);
        while blocks.next_block()?.is_some() {}
        Ok(())
    }

    /// Streams the interleaved samples in blocks of at most `frames_per_block` frames.
    pub fn blocks(&mut self, frames_per_block: usize) -> SampleBlocks<'_, 'a> {
        let len = frames_per_block.max(1) * self.channels;
        let remaining = self.frames * self.channels as u64;
        SampleBlocks {
            samples: self.reader.samples::<i16>(),
            buf: Vec::with_capacity(len),
            block_len: len,
            remaining,
        }
    }
}

/// Iterator-like reader of interleaved sample blocks (a lending iterator: each block borrows the
/// reader's buffer).
pub(crate) struct SampleBlocks<'r, 'a> {
    samples: WavSamples<'r, Cursor<&'a [u8]>, i16>,
    buf: Vec<i16>,
    block_len: usize,
    /// Samples left in whole frames (a dangling partial frame at the end is ignored).
    remaining: u64,
}

impl SampleBlocks<'_, '_> {
    /// The next block of interleaved samples (whole frames; only the last block is shorter
    /// than asked), or `None` at the end of the data.
    pub fn next_block(&mut self) -> Result<Option<&[i16]>, FormatError> {
        self.buf.clear();
        let take = self.remaining.min(self.block_len as u64) as usize;
        for sample in self.samples.by_ref().take(take) {
            self.buf.push(sample.map_err(wav_error)?);
        }
        if self.buf.len() < take {
            return Err(FormatError::InvalidWav(
                "the data ends early (truncated file)".into(),
            ));
        }
        self.remaining -= take as u64;
        Ok(if self.buf.is_empty() {
            None
        } else {
            Some(&self.buf)
        })
    }
}

fn wav_error(err: hound::Error) -> FormatError {
    match err {
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            FormatError::InvalidWav("the data ends early (truncated file)".into())
        }
        hound::Error::Unsupported => {
            FormatError::UnsupportedWav("a WAV variant hound cannot read".into())
        }
        other => FormatError::InvalidWav(other.to_string()),
    }
}
