//! What a schedule is ([`ScheduleSpec`], the same shape in the config file's `[[schedules]]`
//! and in `/api/v1/schedules`), its checks, and the batch one fire makes ([`Batch`]).
//!
//! A fire creates one job per item × style × length (each with `variants` variants), in that
//! order; item `i` of the batch is keyed `schedule:<name>:<fire time ms>:<i>` for the core's
//! idempotency. Seeds are `seed` when fixed, otherwise derived from the schedule's name, the
//! fire time and the item (SHA-256), so a fire is reproducible and two fires differ.

use std::path::{Path, PathBuf};

use protocol::{AudioFormat, Owner, Priority};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::when::{CatchUp, Timing};

/// A schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// 1 to 64 of `a-z`, `0-9`, `-`, `_`; unique.
    pub name: String,
    /// A cron expression: 5-field crontab (`30 6 * * MON-FRI`) or the cron crate's 6/7 fields
    /// with seconds first.
    pub cron: String,
    /// IANA time zone of the expression.
    #[serde(default = "utc")]
    pub timezone: String,
    /// The lyrics of the batch (at least one item).
    pub items: Vec<Item>,
    /// Style prompts; every item is made in each.
    #[serde(default = "pop")]
    pub styles: Vec<String>,
    /// Song lengths in seconds; every item is made at each.
    #[serde(default = "base_length")]
    pub lengths: Vec<u32>,
    /// Variants per job.
    #[serde(default = "one")]
    pub variants: u32,
    /// A fixed seed for every job; absent: derived from the fire time and the item.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Folder under the output root; each fire writes into `<output_dir>/<fire time>/`.
    /// Default `schedules/<name>`.
    #[serde(default)]
    pub output_dir: Option<String>,
    /// Result format (WAV is always kept too).
    #[serde(default)]
    #[schema(value_type = String, example = "mp3")]
    pub format: AudioFormat,
    /// Where each job's status changes are POSTed (Refrain's job view as `data`).
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
    /// The jobs' owner (limits, fair share). Config: default `schedule:<name>`; API: the key.
    #[serde(default)]
    pub owner: Option<String>,
    /// Default `batch`: interactive requests go first.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "batch")]
    pub priority: Option<Priority>,
    /// Jobs of this schedule queued or running at once; the rest of a fire waits (0: no limit).
    #[serde(default = "ten")]
    pub max_in_flight: usize,
    /// Fire times missed while the service was down.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// With `catch_up = "all"`: at most this many missed fire times fire.
    #[serde(default = "ten")]
    pub max_catch_up: usize,
    /// Created paused.
    #[serde(default)]
    pub paused: bool,
}

/// Lyrics for a batch: exactly one of the three (files only in the config file).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// LRC text (empty: an instrumental).
    #[serde(default)]
    pub lyrics: Option<String>,
    /// An `.lrc` file (config only).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub lrc_file: Option<PathBuf>,
    /// Every `.lrc` file of a folder, by name (config only).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub lrc_dir: Option<PathBuf>,
}

/// A schedule's webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub endpoint: String,
    #[serde(default)]
    pub secret: String,
}

impl WebhookSpec {
    /// Where a schedule's jobs report (the job core's webhook target, Refrain's payload).
    pub fn target(&self) -> crate::webhooks::Target {
        crate::webhooks::Target {
            endpoint: self.endpoint.clone(),
            secret: self.secret.clone(),
            payload: crate::webhooks::Payload::Refrain,
        }
    }
}

/// Whether `name` is a schedule name: 1 to 64 of `a-z`, `0-9`, `-`, `_` (safe in paths,
/// URLs, metric labels and idempotency keys).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn utc() -> String {
    "UTC".into()
}
fn pop() -> Vec<String> {
    vec!["pop".into()]
}
fn base_length() -> Vec<u32> {
    vec![95]
}
fn one() -> u32 {
    1
}
fn ten() -> usize {
    10
}

/// One job of a fire.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub index: usize,
    pub lyrics: String,
    /// The `.lrc` file it came from, if any.
    pub lyrics_file: Option<String>,
    pub style: String,
    pub seconds: u32,
}

/// The jobs one fire makes.
pub type Batch = Vec<BatchItem>;

/// Where a schedule came from: the config file (read-only through the API) or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Config,
    Api,
}

impl ScheduleSpec {
    /// Checks everything that can be checked without the model (the core checks lyrics, styles
    /// and lengths per job): the name, the expression and zone, the items (files exist and
    /// read), the output folder. `files_allowed`: items may name files (config only).
    pub fn check(&self, files_allowed: bool) -> Result<Timing, String> {
        if !is_valid_name(&self.name) {
            return Err(format!(
                "name {:?}: 1 to 64 of a-z, 0-9, '-' and '_'",
                self.name
            ));
        }
        let timing = Timing::parse(&self.cron, &self.timezone)
            .map_err(|e| format!("schedule {}: {e}", self.name))?;
        let field = |what: &str| format!("schedule {}: {what}", self.name);
        if self.items.is_empty() {
            return Err(field("items: at least one item is needed"));
        }
        if self.styles.is_empty() || self.styles.iter().any(|s| s.trim().is_empty()) {
            return Err(field("styles: at least one, none blank"));
        }
        if self.lengths.is_empty() {
            return Err(field("lengths: at least one"));
        }
        if self.variants == 0 {
            return Err(field("variants: at least 1"));
        }
        if let Some(dir) = &self.output_dir {
            crate::outputs::OutputStore::validate_subdir(dir)
                .map_err(|e| field(&format!("output_dir: {e}")))?;
        }
        for (i, item) in self.items.iter().enumerate() {
            let given = [
                item.lyrics.is_some(),
                item.lrc_file.is_some(),
                item.lrc_dir.is_some(),
            ]
            .iter()
            .filter(|g| **g)
            .count();
            if given != 1 {
                return Err(field(&format!(
                    "items[{i}]: exactly one of lyrics, lrc_file, lrc_dir"
                )));
            }
            if !files_allowed && item.lyrics.is_none() {
                return Err(field(&format!(
                    "items[{i}]: lrc_file and lrc_dir are only for schedules in the config file \
                     (the server does not read files a client names); give the lyrics text"
                )));
            }
        }
        let batch = self.batch().map_err(|e| field(&e))?;
        if batch.len() > 1000 {
            return Err(field(&format!(
                "a fire would make {} jobs (at most 1,000)",
                batch.len()
            )));
        }
        Ok(timing)
    }

    /// The jobs of one fire, reading the items' files now.
    pub fn batch(&self) -> Result<Batch, String> {
        let mut lyrics: Vec<(String, Option<String>)> = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            if let Some(text) = &item.lyrics {
                lyrics.push((text.clone(), None));
            } else if let Some(file) = &item.lrc_file {
                lyrics.push((
                    read(file).map_err(|e| format!("items[{i}]: {e}"))?,
                    Some(file.display().to_string()),
                ));
            } else if let Some(dir) = &item.lrc_dir {
                let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                    .map_err(|e| format!("items[{i}]: lrc_dir {}: {e}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("lrc")))
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(format!(
                        "items[{i}]: lrc_dir {} holds no .lrc file",
                        dir.display()
                    ));
                }
                for file in files {
                    lyrics.push((
                        read(&file).map_err(|e| format!("items[{i}]: {e}"))?,
                        Some(file.display().to_string()),
                    ));
                }
            }
        }
        let mut batch = Vec::new();
        for (text, file) in &lyrics {
            for style in &self.styles {
                for &seconds in &self.lengths {
                    batch.push(BatchItem {
                        index: batch.len(),
                        lyrics: text.clone(),
                        lyrics_file: file.clone(),
                        style: style.clone(),
                        seconds,
                    });
                }
            }
        }
        Ok(batch)
    }

    /// The seed of item `index` of the fire at `fire_ms`.
    pub fn seed_of(&self, fire_ms: u64, index: usize) -> u64 {
        if let Some(seed) = self.seed {
            return seed;
        }
        let digest = Sha256::digest(format!("{}:{fire_ms}:{index}", self.name));
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// The output folder of the fire at `fire_ms` (`<output_dir>/<UTC time>`).
    pub fn fire_dir(&self, fire_ms: u64) -> String {
        let base = self
            .output_dir
            .clone()
            .unwrap_or_else(|| format!("schedules/{}", self.name));
        let stamp = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(fire_ms as i64)
            .unwrap_or_default()
            .format("%Y%m%dT%H%M%SZ");
        format!("{}/{stamp}", base.trim_end_matches('/'))
    }

    /// The jobs' owner.
    pub fn owner(&self) -> Owner {
        match &self.owner {
            Some(o) => match o.split_once(':') {
                Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Owner::new(kind, id),
                _ => Owner::new("schedule", o),
            },
            None => Owner::new("schedule", &self.name),
        }
    }
}

fn read(file: &Path) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("lrc_file {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ScheduleSpec {
        serde_json::from_value(serde_json::json!({
            "name": "daily", "cron": "30 6 * * *",
            "items": [{"lyrics": "[00:10.00] one"}, {"lyrics": "[00:10.00] two"}],
            "styles": ["pop", "jazz"], "lengths": [95, 120]
        }))
        .unwrap()
    }

    #[test]
    fn a_batch_is_items_by_styles_by_lengths_with_stable_seeds() {
        let s = spec();
        let batch = s.batch().unwrap();
        assert_eq!(batch.len(), 8);
        assert_eq!(
            (
                batch[5].lyrics.as_str(),
                batch[5].style.as_str(),
                batch[5].seconds
            ),
            ("[00:10.00] two", "pop", 120)
        );
        assert_eq!(s.seed_of(1000, 3), s.seed_of(1000, 3));
        assert_ne!(s.seed_of(1000, 3), s.seed_of(2000, 3));
        assert_eq!(s.fire_dir(0), "schedules/daily/19700101T000000Z");
        assert_eq!(s.owner().as_str(), "schedule:daily");
        assert!(s.check(false).is_ok());
    }

    #[test]
    fn files_only_from_the_config_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.lrc"), "[00:10.00] b").unwrap();
        std::fs::write(dir.path().join("a.lrc"), "[00:10.00] a").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let mut s = spec();
        s.items = vec![Item {
            lrc_dir: Some(dir.path().into()),
            ..Item::default()
        }];
        assert!(s
            .check(false)
            .unwrap_err()
            .contains("only for schedules in the config file"));
        let batch = s.batch().unwrap();
        assert_eq!(batch.len(), 8);
        assert_eq!(batch[0].lyrics, "[00:10.00] a");
        assert!(batch[0].lyrics_file.as_deref().unwrap().ends_with("a.lrc"));
        s.items = vec![Item {
            lrc_file: Some(dir.path().join("missing.lrc")),
            ..Item::default()
        }];
        let e = s.check(true).unwrap_err();
        assert!(
            e.contains("schedule daily: items[0]: lrc_file") && e.contains("missing.lrc"),
            "{e}"
        );
        s.items = vec![Item::default()];
        assert!(s.check(true).unwrap_err().contains("exactly one"));
        let mut s = spec();
        s.name = "Bad Name".into();
        assert!(s.check(true).unwrap_err().contains("name"));
        let mut s = spec();
        s.output_dir = Some("../out".into());
        assert!(s.check(true).unwrap_err().contains("output_dir"));
    }
}
