//! The output end: peak normalisation of a generated song to 16-bit PCM, as the reference does,
//! and WAV writing (atomically to a file, or in memory).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Cursor, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{finite_peak, AudioError};

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
