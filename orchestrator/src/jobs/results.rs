//! Turning a node's WAVs into a job's result, and serving it in other formats.
//!
//! [`store_variants`] writes every variant to the output store (variant 1 under the name the
//! DiffRhythm API serves, `<id>.wav`, the others `<id>-<n>.wav`) and, when the job asked for
//! MP3 or Ogg/Opus, transcodes each variant once right there, so the [`JobResult`] lists every
//! file (variant, format, bytes, duration). Both deployments call it, so results look the same
//! whichever node made them.
//!
//! [`audio_file`] gives a succeeded job's variant in any format: a listed file as it is, any
//! other format transcoded from the variant's WAV on first request and cached beside it under
//! the same naming scheme (`<id>[-<n>].mp3`, `.ogg`), one transcode at a time. A download may
//! also ask for a lossy format at another bitrate of a fixed ladder ([`bitrates`]; a bot
//! fitting a song under a chat's upload limit does), cached as `<id>[-<n>].<kbps>k.<ext>`.
//! Retention deletes every name of the scheme with the job.

use protocol::{AudioFormat, JobId, JobRecord, JobResult, JobSpec, ResultFile};
use thiserror::Error;

use crate::outputs::{OutputError, OutputStore};

#[derive(Debug, Error)]
pub enum ResultError {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("cannot encode {format}: {source}")]
    Format {
        format: &'static str,
        #[source]
        source: refrain_formats::FormatError,
    },
    /// The job has no such variant, or no result at all.
    #[error("job {id} has no variant {variant}")]
    NoVariant { id: JobId, variant: u32 },
    /// A bitrate off the ladder of [`bitrates`] (or any bitrate for WAV).
    #[error("{format} is offered at {allowed:?} kbps, not {kbps}")]
    Bitrate {
        format: &'static str,
        kbps: u32,
        allowed: &'static [u32],
    },
}

/// The bitrates (kbps) a download may ask for in `format`, lowest first: a fixed ladder rather
/// than any value, so that a job has a known, small set of cached files (retention deletes
/// them all) and a client cannot fill the disk with one copy per bitrate. Empty for WAV.
pub fn bitrates(format: AudioFormat) -> &'static [u32] {
    match format {
        AudioFormat::Wav => &[],
        AudioFormat::Mp3 => &[64, 96, 128, 160, 192, 256, 320],
        AudioFormat::Opus => &[24, 32, 48, 64, 96, 128, 160],
    }
}

/// `name` (`<stem>.<ext>`) at another bitrate: `<stem>.<kbps>k.<ext>`.
fn at_bitrate(name: &str, kbps: u32) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.{kbps}k.{ext}"),
        None => format!("{name}.{kbps}k"),
    }
}

impl ResultError {
    /// An error that writing the same result again cannot get past (a result name or an
    /// `output_dir` the output store refuses): the job fails at once instead of being retried.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ResultError::Output(OutputError::BadSubdir(_) | OutputError::BadName(_))
        )
    }
}

/// Writes each WAV of `wavs` (index 0 = variant 1) atomically, plus the format the job asked
/// for, and returns the result of `attempt`. Nothing is recorded here: the caller hands the
/// result to the lifecycle.
pub async fn store_variants(
    outputs: &OutputStore,
    id: &JobId,
    spec: &JobSpec,
    attempt: u32,
    wavs: &[Vec<u8>],
    duration_seconds: f64,
) -> Result<JobResult, ResultError> {
    let subdir = spec.output_subdir.as_deref();
    let mut files = Vec::with_capacity(wavs.len() * 2);
    for (i, wav) in wavs.iter().enumerate() {
        let variant = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let file = OutputStore::variant_relative(subdir, id, variant, AudioFormat::Wav);
        let bytes = outputs.write(&file, wav).await?;
        files.push(ResultFile {
            variant,
            format: AudioFormat::Wav,
            file,
            bytes,
            duration_seconds,
        });
    }
    if spec.format != AudioFormat::Wav {
        for (i, wav) in wavs.iter().enumerate() {
            let variant = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let file = OutputStore::variant_relative(subdir, id, variant, spec.format);
            let encoded = encode(wav.clone(), spec.format, *outputs.encoding()).await?;
            let bytes = outputs.write(&file, &encoded).await?;
            files.push(ResultFile {
                variant,
                format: spec.format,
                file,
                bytes,
                duration_seconds,
            });
        }
    }
    let first = files.first().cloned().unwrap_or_else(|| ResultFile {
        variant: 1,
        format: AudioFormat::Wav,
        file: OutputStore::relative(subdir, id),
        bytes: 0,
        duration_seconds,
    });
    Ok(JobResult {
        file: first.file,
        bytes: first.bytes,
        duration_seconds,
        attempt,
        files,
    })
}

/// The file of a succeeded job's `variant` (1-based) in `format`: listed in its result, or
/// transcoded once from the variant's WAV and cached.
pub async fn audio_file(
    outputs: &OutputStore,
    record: &JobRecord,
    variant: u32,
    format: AudioFormat,
) -> Result<ResultFile, ResultError> {
    audio_file_at(outputs, record, variant, format, None).await
}

/// [`audio_file`] at bitrate `kbps` (one of [`bitrates`]; `None` or the configured bitrate:
/// the usual file).
pub async fn audio_file_at(
    outputs: &OutputStore,
    record: &JobRecord,
    variant: u32,
    format: AudioFormat,
    kbps: Option<u32>,
) -> Result<ResultFile, ResultError> {
    let mut settings = *outputs.encoding();
    let configured = match format {
        AudioFormat::Wav => None,
        AudioFormat::Mp3 => Some(settings.mp3_kbps),
        AudioFormat::Opus => Some(settings.opus_kbps),
    };
    let kbps = kbps.filter(|k| Some(*k) != configured);
    if let Some(kbps) = kbps {
        if !bitrates(format).contains(&kbps) {
            return Err(ResultError::Bitrate {
                format: format.extension(),
                kbps,
                allowed: bitrates(format),
            });
        }
        match format {
            AudioFormat::Mp3 => settings.mp3_kbps = kbps,
            _ => settings.opus_kbps = kbps,
        }
    }
    let missing = || ResultError::NoVariant {
        id: record.id.clone(),
        variant,
    };
    let result = record.result.as_ref().ok_or_else(missing)?;
    let listed = |format| {
        result
            .files
            .iter()
            .find(|f| f.variant == variant && f.format == format)
            .cloned()
    };
    if let Some(file) = listed(format).filter(|_| kbps.is_none()) {
        return Ok(file);
    }
    // Results from before variants were listed have only `file` (variant 1, WAV).
    let wav = listed(AudioFormat::Wav)
        .or_else(|| {
            (variant == 1 && result.files.is_empty()).then(|| ResultFile {
                variant: 1,
                format: AudioFormat::Wav,
                file: result.file.clone(),
                bytes: result.bytes,
                duration_seconds: result.duration_seconds,
            })
        })
        .ok_or_else(missing)?;
    if format == AudioFormat::Wav {
        return Ok(wav);
    }
    let mut file = OutputStore::variant_relative(
        record.spec.output_subdir.as_deref(),
        &record.id,
        variant,
        format,
    );
    if let Some(kbps) = kbps {
        file = at_bitrate(&file, kbps);
    }
    let _once = outputs.transcoding().lock().await;
    let path = outputs.resolve(&file)?;
    let bytes = match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => m.len(),
        _ => {
            let source = outputs.resolve(&wav.file)?;
            let pcm = tokio::fs::read(&source)
                .await
                .map_err(|e| OutputError::Io {
                    context: format!("reading {}", wav.file),
                    source: e,
                })?;
            let encoded = encode(pcm, format, settings).await?;
            outputs.write(&file, &encoded).await?
        }
    };
    Ok(ResultFile {
        variant,
        format,
        file,
        bytes,
        duration_seconds: wav.duration_seconds,
    })
}

/// Every file name a job's results can have (each variant in each format), for retention.
pub fn all_file_names(record: &JobRecord) -> Vec<String> {
    let subdir = record.spec.output_subdir.as_deref();
    let variants = record.spec.variants.max(1);
    (1..=variants)
        .flat_map(|v| {
            [AudioFormat::Wav, AudioFormat::Mp3, AudioFormat::Opus]
                .into_iter()
                .flat_map(move |f| {
                    let name = OutputStore::variant_relative(subdir, &record.id, v, f);
                    let ladder = bitrates(f).iter().map({
                        let name = name.clone();
                        move |k| at_bitrate(&name, *k)
                    });
                    std::iter::once(name).chain(ladder)
                })
        })
        .collect()
}

async fn encode(
    wav: Vec<u8>,
    format: AudioFormat,
    settings: refrain_formats::EncodeSettings,
) -> Result<Vec<u8>, ResultError> {
    let name = format.extension();
    tokio::task::spawn_blocking(move || refrain_formats::transcode(&wav, format, &settings))
        .await
        .map_err(|e| {
            ResultError::Output(OutputError::Io {
                context: format!("encoding {name}"),
                source: std::io::Error::other(e.to_string()),
            })
        })?
        .map_err(|source| ResultError::Format {
            format: name,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{JobState, Source, StyleSpec};

    /// A result name or folder the store refuses is permanent (never retried); an I/O error
    /// (a full disk) may pass on a later attempt.
    #[test]
    fn only_refused_names_are_permanent() {
        assert!(ResultError::Output(OutputError::BadSubdir("..".into())).is_permanent());
        assert!(ResultError::Output(OutputError::BadName("x".into())).is_permanent());
        let io = OutputError::Io {
            context: "writing".into(),
            source: std::io::Error::other("disk full"),
        };
        assert!(!ResultError::Output(io).is_permanent());
    }

    fn wav(seconds: f64) -> Vec<u8> {
        let frames = (44_100.0 * seconds) as usize;
        let samples: Vec<i16> = (0..frames * 2)
            .map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16)
            .collect();
        refrain_model::audio::wav_bytes_i16(&samples, 2, 44_100).unwrap()
    }

    fn spec(format: AudioFormat, variants: u32) -> JobSpec {
        JobSpec {
            lyrics: String::new(),
            style: StyleSpec::Prompt("pop".into()),
            seconds: 95,
            seed: 1,
            steps: None,
            cfg_strength: None,
            variants,
            chunked: false,
            edit: None,
            init: None,
            output_subdir: None,
            format,
        }
    }

    #[tokio::test]
    async fn variants_and_formats_are_written_once_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let outputs = OutputStore::open(dir.path()).unwrap();
        let id = JobId::from_bytes([7; 16]);
        let wavs = vec![wav(0.5), wav(0.5)];
        let result = store_variants(&outputs, &id, &spec(AudioFormat::Mp3, 2), 1, &wavs, 0.5)
            .await
            .unwrap();
        let names: Vec<(u32, AudioFormat)> =
            result.files.iter().map(|f| (f.variant, f.format)).collect();
        assert_eq!(
            names,
            [
                (1, AudioFormat::Wav),
                (2, AudioFormat::Wav),
                (1, AudioFormat::Mp3),
                (2, AudioFormat::Mp3)
            ]
        );
        assert_eq!(result.file, id.file_name());
        for f in &result.files {
            let bytes = std::fs::read(outputs.resolve(&f.file).unwrap()).unwrap();
            assert_eq!(bytes.len() as u64, f.bytes, "{}", f.file);
        }

        let record = JobRecord {
            id: id.clone(),
            spec: spec(AudioFormat::Mp3, 2),
            state: JobState::Succeeded,
            attempt: 1,
            interruptions: 0,
            source: Source::Cli,
            created_ms: 0,
            updated_ms: 0,
            started_ms: None,
            finished_ms: None,
            progress: None,
            result: Some(result),
            error: None,
            owner: Default::default(),
            priority: Default::default(),
            idempotency_key: None,
            request_hash: None,
            event_seq: 3,
            client_data: None,
            title: None,
        };
        // Listed: served as is.
        let mp3 = audio_file(&outputs, &record, 2, AudioFormat::Mp3)
            .await
            .unwrap();
        assert_eq!(mp3.file, format!("{id}-2.mp3"));
        // Not listed: transcoded once, then the cached file is used.
        let ogg = audio_file(&outputs, &record, 2, AudioFormat::Opus)
            .await
            .unwrap();
        assert_eq!(ogg.file, format!("{id}-2.ogg"));
        let path = outputs.resolve(&ogg.file).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"OggS");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let again = audio_file(&outputs, &record, 2, AudioFormat::Opus)
            .await
            .unwrap();
        assert_eq!(again.bytes, ogg.bytes);
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        assert!(matches!(
            audio_file(&outputs, &record, 3, AudioFormat::Wav).await,
            Err(ResultError::NoVariant { .. })
        ));
        // Another bitrate of the ladder: its own cached file, smaller at a lower rate.
        let low = audio_file_at(&outputs, &record, 2, AudioFormat::Mp3, Some(64))
            .await
            .unwrap();
        assert_eq!(low.file, format!("{id}-2.64k.mp3"));
        assert!(low.bytes < mp3.bytes);
        let same = audio_file_at(&outputs, &record, 2, AudioFormat::Mp3, Some(192))
            .await
            .unwrap();
        assert_eq!(
            same.file, mp3.file,
            "the configured bitrate is the usual file"
        );
        assert!(matches!(
            audio_file_at(&outputs, &record, 2, AudioFormat::Mp3, Some(100)).await,
            Err(ResultError::Bitrate { kbps: 100, .. })
        ));
        assert!(matches!(
            audio_file_at(&outputs, &record, 2, AudioFormat::Wav, Some(64)).await,
            Err(ResultError::Bitrate { .. })
        ));
        let names = all_file_names(&record);
        assert!(names.contains(&ogg.file) && names.contains(&mp3.file));
        assert!(names.contains(&low.file) && names.len() == 2 * (3 + 7 + 7));
    }
}
