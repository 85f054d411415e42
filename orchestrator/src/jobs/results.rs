//! Turning a node's WAVs into a job's result: every variant is written to the output store
//! (variant 1 under the name the DiffRhythm API serves, `<id>.wav`), and the [`JobResult`]
//! lists each file. Both deployments call [`store_variants`], so results look the same
//! whichever node made them.

use protocol::{AudioFormat, JobId, JobResult, JobSpec, ResultFile};

use crate::outputs::{OutputError, OutputStore};

/// Writes each WAV of `wavs` (index 0 = variant 1) atomically and returns the result of
/// `attempt`. Nothing is recorded here: the caller hands the result to the lifecycle.
pub async fn store_variants(
    outputs: &OutputStore,
    id: &JobId,
    spec: &JobSpec,
    attempt: u32,
    wavs: &[Vec<u8>],
    duration_seconds: f64,
) -> Result<JobResult, OutputError> {
    let subdir = spec.output_subdir.as_deref();
    let mut files = Vec::with_capacity(wavs.len());
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
