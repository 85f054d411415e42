//! Song jobs whose result is known in advance, for the tests that kill processes under them
//! (tests/durability.rs, tests/chaos.rs): one request — the same lyrics and prompt, a length and
//! a seed — through `POST /generate`, the [`Oracle`] of its bytes (an uninterrupted
//! `refrain generate` run of the same request, made once per length and seed), and what the
//! job's event history says happened to it ([`Api::summary`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::blocking::multipart::Form;
use serde_json::Value;

use super::audio::generate_reference;
use super::http::Api;

pub const PROMPT: &str = "warm synthwave with a steady beat";
pub const LYRICS: &str = "[00:02.00]we were here before\n[00:08.00]and we will be again\n";

/// A song job as submitted.
#[derive(Debug, Clone)]
pub struct SongJob {
    pub id: String,
    /// `/output/<id>.wav`.
    pub url: String,
    pub seconds: u32,
    pub seed: u64,
}

/// The request of a song job: the spec client's `_dummy` part, [`PROMPT`], [`LYRICS`], the
/// length and the seed.
pub fn song_request(seconds: u32, seed: u64) -> Form {
    Form::new()
        .text("_dummy", "")
        .text("ref_prompt", PROMPT)
        .text("lrc", LYRICS)
        .text("audio_length", seconds.to_string())
        .text("seed", seed.to_string())
}

impl Api {
    /// `POST /generate` of [`song_request`]; panics unless it is accepted (202).
    pub fn submit_song(&self, seconds: u32, seed: u64) -> SongJob {
        let (id, url) = self.submit(song_request(seconds, seed));
        SongJob {
            id,
            url,
            seconds,
            seed,
        }
    }

    /// `POST /generate` of [`song_request`] to a server that may be down or unable to take it:
    /// the job if it was accepted (2xx), else what happened (a transport error or the status
    /// and body).
    pub fn try_submit_song(&self, seconds: u32, seed: u64) -> Result<SongJob, String> {
        let response = self
            .http
            .post(format!("{}/generate", self.base))
            .multipart(song_request(seconds, seed))
            .send()
            .map_err(|e| format!("POST /generate: {e}"))?;
        let status = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("POST /generate: {status} {body}"));
        }
        let field = |name: &str| body[name].as_str().map(str::to_string);
        match (field("job_id"), field("url")) {
            (Some(id), Some(url)) => Ok(SongJob {
                id,
                url,
                seconds,
                seed,
            }),
            _ => panic!("an accepted job without job_id and url: {status} {body}"),
        }
    }

    /// What a job's event history says (the outbox survives every kill); waits for the final
    /// event of an unfinished job.
    pub fn summary(&self, id: &str) -> JobSummary {
        let mut summary = JobSummary::default();
        for event in self.history(id) {
            match event.kind.as_str() {
                "started" => summary
                    .started
                    .push((event.attempt(), event.data["at_ms"].as_u64())),
                "succeeded" => summary.succeeded += 1,
                "failed" | "cancelled" | "expired" => summary.ended_otherwise.push(format!(
                    "{}: {}",
                    event.kind,
                    event.data["error"].as_str().unwrap_or_default()
                )),
                _ => {}
            }
        }
        summary
    }
}

/// What happened to a job, from its events.
#[derive(Debug, Clone, Default)]
pub struct JobSummary {
    /// Every run started: (attempt, Unix milliseconds of the event).
    pub started: Vec<(u64, Option<u64>)>,
    /// `succeeded` events (exactly one for a job that completed once).
    pub succeeded: usize,
    /// `failed`, `cancelled` or `expired` events, with their error.
    pub ended_otherwise: Vec<String>,
}

impl JobSummary {
    /// The attempts of the runs started, in order.
    pub fn attempts(&self) -> Vec<u64> {
        self.started.iter().map(|(a, _)| *a).collect()
    }

    /// When the first run that started at or after `after_ms` (Unix milliseconds) started.
    pub fn first_start_after(&self, after_ms: u64) -> Option<u64> {
        self.started
            .iter()
            .filter_map(|(_, at)| *at)
            .filter(|at| *at >= after_ms)
            .min()
    }
}

/// The bytes a song job must end with, however often it was interrupted: an uninterrupted
/// `refrain generate` of the same request at the same sampler steps, made on first use and kept
/// for every job of the same length and seed.
pub struct Oracle {
    dir: PathBuf,
    steps: u32,
    songs: BTreeMap<(u32, u64), Vec<u8>>,
}

impl Oracle {
    /// References are made in `dir` at `steps` sampler steps (the jobs' `inference.steps`).
    pub fn new(dir: &Path, steps: u32) -> Oracle {
        Oracle {
            dir: dir.to_path_buf(),
            steps,
            songs: BTreeMap::new(),
        }
    }

    /// The reference bytes of `job`'s request.
    pub fn expected(&mut self, job: &SongJob) -> &[u8] {
        let (dir, steps) = (&self.dir, self.steps);
        self.songs
            .entry((job.seconds, job.seed))
            .or_insert_with(|| {
                generate_reference(dir, LYRICS, PROMPT, job.seconds, job.seed, steps)
            })
    }

    /// Whether `bytes` are `job`'s reference bytes.
    pub fn matches(&mut self, job: &SongJob, bytes: &[u8]) -> bool {
        self.expected(job) == bytes
    }
}
