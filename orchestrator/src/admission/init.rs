//! A draft's init song (the sampler starts from it re-noised: `protocol::InitSpec`, SDEdit,
//! Refrain's addition to DiffRhythm), checked as the node will use it.

use protocol::JobId;

use super::draft::{Draft, InitInput, SongInput};
use super::{audio, Song};
use crate::app::App;
use crate::error::{Field, OrchestratorError};

impl App {
    /// Checks the song a sampler is to start from: not with an edit, a strength from 0 to 1, a
    /// song that exists and covers every frame of the new one (the node's rule).
    pub(super) async fn check_init(
        &self,
        draft: &Draft,
        init: InitInput,
        seconds: u32,
    ) -> Result<(Song, f32), OrchestratorError> {
        if draft.edit.is_some() {
            return Err(OrchestratorError::invalid(
                Field::InitSong,
                "a song to start from cannot be combined with an edit",
            ));
        }
        if !(init.strength.is_finite() && (0.0..=1.0).contains(&init.strength)) {
            return Err(OrchestratorError::invalid(
                Field::InitStrength,
                format!("expected a number from 0 to 1, not {}", init.strength),
            ));
        }
        let as_init = |e: OrchestratorError| match e {
            OrchestratorError::Invalid {
                code,
                field: Field::EditSong,
                message,
            } => OrchestratorError::coded(code, Field::InitSong, message),
            other => other,
        };
        let (song, have) = match init.song {
            SongInput::Audio(input) => {
                let checked = audio::check(self, Field::InitSong, input, None).await?;
                let seconds = checked.seconds();
                (Song::Audio(checked), seconds)
            }
            SongInput::ResultFile(name) => {
                let id = self.resolve_result(&name).await.map_err(as_init)?;
                let seconds = self.result_seconds(&id)?;
                (Song::Job(id), seconds)
            }
            SongInput::Job(id) => {
                let id = self.resolve_job(&id).await.map_err(as_init)?;
                let seconds = self.result_seconds(&id)?;
                (Song::Job(id), seconds)
            }
        };
        self.validator().check_init_covers(have, seconds)?;
        Ok((song, init.strength as f32))
    }

    /// The duration of a succeeded job's result, in seconds.
    fn result_seconds(&self, id: &JobId) -> Result<f64, OrchestratorError> {
        Ok(self
            .job(id)?
            .and_then(|r| r.result)
            .map_or(0.0, |r| r.duration_seconds))
    }
}
