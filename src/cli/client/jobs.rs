//! `refrain jobs`: the jobs of a Refrain server through its own API — `list` (a table, newest
//! first, `GET /api/v1/jobs`), `show` (the job as pretty JSON), `cancel` (`DELETE`) and
//! `download` (a variant's audio, written atomically).

use std::path::PathBuf;

use serde_json::Value;

use super::download::{audio_path, save, Format};
use super::{job_id, Client, ServerArgs};

#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum JobsCommand {
    /// The jobs, newest first: id, state, created, length, progress.
    List {
        /// Only jobs in this state.
        #[arg(long, value_parser = ["queued", "running", "succeeded", "failed", "cancelled"])]
        state: Option<String>,
        /// At most this many jobs (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Continue a listing where the previous page ended.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One job as JSON.
    Show { id: String },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// Download a succeeded job's audio.
    Download {
        id: String,
        /// Output file (default: ID.EXT, or ID-N.EXT for variant N, here).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Which variant (1 to 5).
        #[arg(long, default_value_t = 1)]
        variant: u32,
        /// Audio format (default: the job's own).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

pub fn run(args: JobsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    match args.command {
        JobsCommand::List {
            state,
            limit,
            cursor,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(state) = state {
                query.push(("state", state));
            }
            if let Some(cursor) = cursor {
                query.push(("cursor", cursor));
            }
            let response = client.send(
                client
                    .request(reqwest::Method::GET, "/api/v1/jobs")
                    .query(&query),
            )?;
            let page = client.json(response)?;
            let jobs = page["jobs"].as_array().cloned().unwrap_or_default();
            if jobs.is_empty() {
                eprintln!("no jobs");
            } else {
                print!("{}", table(&jobs));
            }
            if let Some(next) = page["next_cursor"].as_str() {
                eprintln!("more: refrain jobs list --limit {limit} --cursor {next}");
            }
        }
        JobsCommand::Show { id } => {
            let job = client.get_json(&format!("/api/v1/jobs/{}", job_id(&id)?))?;
            println!("{}", serde_json::to_string_pretty(&job)?);
        }
        JobsCommand::Cancel { id } => {
            let id = job_id(&id)?;
            let job = client.delete_json(&format!("/api/v1/jobs/{id}"))?;
            println!("{id} {}", job["state"].as_str().unwrap_or("cancelled"));
        }
        JobsCommand::Download {
            id,
            output,
            variant,
            format,
        } => {
            let id = job_id(&id)?;
            let response = client
                .send(client.request(reqwest::Method::GET, &audio_path(id, variant, format)))?;
            let path = match output {
                Some(path) => path,
                None => {
                    let ext = format
                        .or_else(|| Format::of_response(&response))
                        .unwrap_or(Format::Wav)
                        .as_str();
                    if variant <= 1 {
                        PathBuf::from(format!("{id}.{ext}"))
                    } else {
                        PathBuf::from(format!("{id}-{variant}.{ext}"))
                    }
                }
            };
            let bytes = save(&client, response, &path)?;
            eprintln!("wrote {} ({bytes} bytes)", path.display());
        }
    }
    Ok(())
}

/// The jobs as an aligned table with a header line.
fn table(jobs: &[Value]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "STATE".into(),
        "CREATED".into(),
        "LENGTH".into(),
        "PROGRESS".into(),
    ]];
    for job in jobs {
        rows.push([
            job["id"].as_str().unwrap_or("?").to_string(),
            job["state"].as_str().unwrap_or("?").to_string(),
            created(job),
            job["request"]["length_seconds"]
                .as_u64()
                .map(|s| format!("{s} s"))
                .unwrap_or_else(|| "-".into()),
            progress(job),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `2026-12-02 14:00:00` from `2026-12-02T14:00:00.000Z` (UTC).
fn created(job: &Value) -> String {
    match job["created_at"].as_str() {
        Some(t) => {
            let t = t.split('.').next().unwrap_or(t).trim_end_matches('Z');
            t.replacen('T', " ", 1)
        }
        None => "-".into(),
    }
}

fn progress(job: &Value) -> String {
    match job["state"].as_str() {
        Some("succeeded") => "100%".into(),
        Some("queued") => match job["queue_position"].as_u64() {
            Some(p) => format!("queued #{p}"),
            None => "-".into(),
        },
        Some("running") => match job["progress"]["percent"].as_f64() {
            Some(p) => format!(
                "{p:.0}% {}",
                job["progress"]["stage"].as_str().unwrap_or_default()
            )
            .trim_end()
            .to_string(),
            None => "starting".into(),
        },
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_of_jobs() {
        let jobs = [
            json!({"id": "aa11", "state": "running", "created_at": "2026-12-02T14:00:00.000Z",
                   "request": {"length_seconds": 95},
                   "progress": {"stage": "sampling", "percent": 38.7}}),
            json!({"id": "bb2222", "state": "queued", "created_at": "2026-12-02T14:00:01.250Z",
                   "request": {"length_seconds": 285}, "queue_position": 0}),
        ];
        assert_eq!(
            table(&jobs),
            "ID      STATE    CREATED              LENGTH  PROGRESS\n\
             aa11    running  2026-12-02 14:00:00  95 s    39% sampling\n\
             bb2222  queued   2026-12-02 14:00:01  285 s   queued #0\n"
        );
    }
}
