//! A job's spec turned into a pipeline request: its uploads and earlier results fetched
//! through the link and decoded. Apart from the loop (`super`) because it is the same for the
//! running job and the one prepared ahead, and has nothing to do with the loop's timing.

use protocol::{JobId, JobSpec, SongRef, StyleSpec};

use crate::audio::{self, Decoded};
use crate::pipeline::{EditRequest, GenerateRequest, InitRequest};
use crate::style::StyleSource;

use super::{NodeLink, Outcome, WorkerSettings};

async fn decode(
    bytes: Vec<u8>,
    hint: Option<String>,
    max_seconds: f64,
    what: &str,
) -> Result<Decoded, Outcome> {
    tokio::task::spawn_blocking(move || audio::decode(&bytes, hint.as_deref(), max_seconds))
        .await
        .map_err(|e| Outcome::Retry(format!("decoder task: {e}")))?
        .map_err(|e| Outcome::Invalid(format!("{what}: {e}")))
}

async fn blob(
    link: &dyn NodeLink,
    job: &JobId,
    name: &str,
    max_seconds: f64,
    what: &str,
) -> Result<Decoded, Outcome> {
    let bytes = link.blob(job, name).await.map_err(|e| {
        let message = format!("{what}: the upload is not available ({e})");
        if e.transient {
            Outcome::Retry(message)
        } else {
            Outcome::Invalid(message)
        }
    })?;
    let hint = name.rsplit_once('.').map(|(_, ext)| ext.to_string());
    decode(bytes, hint, max_seconds, what).await
}

/// Turns a spec into a pipeline request, fetching the files it names.
pub async fn load_request(
    link: &dyn NodeLink,
    job: &JobId,
    spec: &JobSpec,
    settings: &WorkerSettings,
) -> Result<GenerateRequest, Outcome> {
    let max = settings.max_reference_seconds;
    let style = match &spec.style {
        StyleSpec::Prompt(p) => StyleSource::Prompt(p.clone()),
        StyleSpec::Upload(name) => {
            StyleSource::Audio(blob(link, job, name, max, "ref_audio").await?)
        }
    };
    let edit = match &spec.edit {
        None => None,
        Some(edit) => Some(EditRequest {
            reference: song(link, job, &edit.song, max, "ref_song").await?,
            segments: edit.segments.clone(),
        }),
    };
    let init = match &spec.init {
        None => None,
        Some(init) => Some(InitRequest {
            song: song(link, job, &init.song, max, "init song").await?,
            strength: init.strength,
        }),
    };
    Ok(GenerateRequest {
        lyrics: spec.lyrics.clone(),
        style,
        seconds: spec.seconds,
        seed: spec.seed,
        steps: settings.steps.or(spec.steps),
        cfg_strength: spec.cfg_strength,
        variants: spec.variants as usize,
        chunked: spec.chunked,
        edit,
        init,
    })
}

/// A song a job starts from (an edit's or an init's): an upload, or an earlier job's result.
async fn song(
    link: &dyn NodeLink,
    job: &JobId,
    song: &SongRef,
    max_seconds: f64,
    what: &str,
) -> Result<Decoded, Outcome> {
    match song {
        SongRef::Upload(name) => blob(link, job, name, max_seconds, what).await,
        SongRef::Output(source) => {
            let bytes = link.earlier_result(job, source).await.map_err(|e| {
                if e.transient {
                    Outcome::Retry(format!("{what}: {e}"))
                } else {
                    Outcome::Invalid(format!("{what}: {e}"))
                }
            })?;
            decode(bytes, Some("wav".into()), max_seconds, what).await
        }
    }
}
