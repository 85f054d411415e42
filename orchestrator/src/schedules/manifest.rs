//! A fire's manifest, `manifest.json` and `manifest.csv` in its output folder: one row per job
//! (item, lyrics file, style, length, seed, job, state, result files), written when the fire
//! has created its jobs and rewritten as each of them finishes. Only the scheduler task writes
//! manifests; each write replaces the file whole (the output store writes to a temporary file
//! and renames it).

use serde::{Deserialize, Serialize};

/// One job of a fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub item: usize,
    pub lyrics_file: Option<String>,
    pub style: String,
    pub seconds: u32,
    pub seed: u64,
    /// The job (none when admission refused the item).
    pub job: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, or `refused`.
    pub state: String,
    /// Why it failed or was refused.
    pub error: Option<String>,
    /// Result files under the output root.
    pub files: Vec<String>,
}

/// The manifest of one fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schedule: String,
    /// The fire time in UTC and in the schedule's zone (RFC 3339).
    pub fire_time: String,
    pub fire_time_local: String,
    pub rows: Vec<Row>,
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

impl Manifest {
    pub fn json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest encodes")
    }

    /// RFC 4180 CSV with a header row; files separated by spaces.
    pub fn csv(&self) -> Vec<u8> {
        let mut out = String::from("item,lyrics_file,style,seconds,seed,job,state,error,files\r\n");
        for r in &self.rows {
            let fields = [
                r.item.to_string(),
                r.lyrics_file.clone().unwrap_or_default(),
                r.style.clone(),
                r.seconds.to_string(),
                r.seed.to_string(),
                r.job.clone().unwrap_or_default(),
                r.state.clone(),
                r.error.clone().unwrap_or_default(),
                r.files.join(" "),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let m = Manifest {
            schedule: "s".into(),
            fire_time: "t".into(),
            fire_time_local: "t".into(),
            rows: vec![Row {
                item: 0,
                lyrics_file: None,
                style: "pop, \"bright\"".into(),
                seconds: 95,
                seed: 7,
                job: Some("j".into()),
                state: "succeeded".into(),
                error: None,
                files: vec!["a.wav".into(), "a.mp3".into()],
            }],
        };
        let csv = String::from_utf8(m.csv()).unwrap();
        assert_eq!(
            csv,
            "item,lyrics_file,style,seconds,seed,job,state,error,files\r\n\
             0,,\"pop, \"\"bright\"\"\",95,7,j,succeeded,,a.wav a.mp3\r\n"
        );
    }
}
