//! `refrain submit`: asks a Refrain server for a song through its own API. A reference
//! recording (`--ref-audio`) is uploaded first (`POST /api/v1/uploads`); the job is created
//! with `POST /api/v1/jobs` under an `Idempotency-Key` made here, so the request can be sent
//! again after a connection error (up to 3 times) without ever making two jobs. The job id goes
//! to stdout. With `--wait` (implied by `-o`) the job is followed to its end ([`super::watch`])
//! and, with `-o`, every variant is downloaded atomically (`OUT`, `OUT-2`, …). A failed,
//! cancelled or expired job is an error (non-zero exit) with its reason.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::download::{audio_path, save, variant_path, Format};
use super::{Client, ClientError, ServerArgs};

/// Sends of `POST /api/v1/jobs` after the first one when the connection fails.
const POST_RETRIES: u32 = 3;

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// LRC lyrics file (UTF-8). Without it the song is instrumental.
    #[arg(long)]
    lrc: Option<PathBuf>,
    /// Style as a text prompt, e.g. "upbeat pop with piano".
    #[arg(
        long,
        conflicts_with = "ref_audio",
        required_unless_present = "ref_audio"
    )]
    prompt: Option<String>,
    /// Style from a reference recording (WAV, MP3, FLAC or Ogg, at least 10 s), uploaded first.
    #[arg(long)]
    ref_audio: Option<PathBuf>,
    /// Song length in seconds: 95, or 96 to 285.
    #[arg(long, default_value_t = 95)]
    length: u32,
    /// Seed of the start noise (default: the server picks one).
    #[arg(long)]
    seed: Option<u64>,
    /// Number of variants (1 to 5); variant k > 1 is written to OUT-k.EXT.
    #[arg(long)]
    variants: Option<u32>,
    /// Audio format of the result (default: the extension of -o, else wav).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Decode in chunks on the node (less memory).
    #[arg(long)]
    chunked: bool,
    /// Follow the job until it ends, with its progress on stderr.
    #[arg(long)]
    wait: bool,
    /// Wait, then download the song to this file (atomically).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: SubmitArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    let lyrics = match &args.lrc {
        Some(p) => super::super::read_text(p, "lyrics file")?,
        None => String::new(),
    };
    let format = args
        .format
        .or_else(|| args.output.as_deref().and_then(Format::of_path));
    let style = match (&args.prompt, &args.ref_audio) {
        (Some(prompt), None) => json!({ "prompt": prompt }),
        (None, Some(path)) => {
            let upload = client.upload(path)?;
            let upload_id = upload["upload_id"].as_str().ok_or_else(|| {
                ClientError::Protocol(format!("an upload without an upload_id: {upload}"))
            })?;
            eprintln!(
                "uploaded {} ({} bytes, {:.1} s)",
                path.display(),
                upload["bytes"].as_u64().unwrap_or(0),
                upload["duration_seconds"].as_f64().unwrap_or(0.0)
            );
            json!({ "upload_id": upload_id })
        }
        _ => anyhow::bail!("give exactly one of --prompt or --ref-audio"),
    };
    let mut body = json!({
        "lyrics": lyrics,
        "style": style,
        "length_seconds": args.length,
    });
    if let Some(seed) = args.seed {
        body["seed"] = json!(seed);
    }
    if let Some(variants) = args.variants {
        body["variants"] = json!(variants);
    }
    if let Some(format) = format {
        body["format"] = json!(format.as_str());
    }
    if args.chunked {
        body["chunked"] = json!(true);
    }

    let job = create(&client, &body)?;
    let id = super::job_id(job["id"].as_str().unwrap_or_default())?.to_string();
    println!("{id}");
    let _ = std::io::stdout().flush();
    if !args.wait && args.output.is_none() {
        match job["queue_position"].as_u64() {
            Some(p) => eprintln!("job {id} {} (queue position {p})", state(&job)),
            None => eprintln!("job {id} {}", state(&job)),
        }
        return Ok(());
    }

    let end = super::watch::follow(&client, &id)?;
    if end.kind != "succeeded" {
        return Err(ClientError::JobEnded {
            id,
            state: end.kind,
            error: end.data["error"].as_str().map(str::to_string),
        }
        .into());
    }
    let Some(out) = &args.output else {
        eprintln!("job {id} succeeded; download it with `refrain jobs download {id}`");
        return Ok(());
    };
    let done = client.get_json(&format!("/api/v1/jobs/{id}"))?;
    let requested = args.variants.unwrap_or(1).max(1);
    let mut variants: Vec<u32> = done["result"]["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .filter_map(|f| f["variant"].as_u64())
                .filter_map(|v| u32::try_from(v).ok())
                .collect()
        })
        .unwrap_or_default();
    variants.sort_unstable();
    variants.dedup();
    if variants.is_empty() {
        variants = (1..=requested).collect();
    }
    let ext = format.unwrap_or(Format::Wav).as_str();
    for variant in variants {
        let path = variant_path(out, variant, ext);
        let response =
            client.send(client.request(reqwest::Method::GET, &audio_path(&id, variant, format)))?;
        let bytes = save(&client, response, &path)?;
        eprintln!("wrote {} ({bytes} bytes)", path.display());
    }
    Ok(())
}

/// `POST /api/v1/jobs` under one idempotency key, sent again (same key, same body) after a
/// connection error: the server answers a repeat with the job the first send created.
fn create(client: &Client, body: &Value) -> Result<Value, ClientError> {
    let key = idempotency_key();
    let mut attempt = 0;
    loop {
        let result = client
            .send(
                client
                    .request(reqwest::Method::POST, "/api/v1/jobs")
                    .header("Idempotency-Key", &key)
                    .json(body),
            )
            .and_then(|response| client.json(response));
        match result {
            Err(e) if e.is_transport() && attempt < POST_RETRIES => {
                attempt += 1;
                eprintln!("{e}; sending again ({attempt}/{POST_RETRIES})");
                std::thread::sleep(Duration::from_millis(500 << (attempt - 1)));
            }
            other => return other,
        }
    }
}

/// 128 random bits as hex, prefixed so a server log shows who made it.
fn idempotency_key() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("refrain-cli-{hex}")
}

fn state(job: &Value) -> &str {
    job["state"].as_str().unwrap_or("created")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_fresh_printable_ascii() {
        let a = idempotency_key();
        let b = idempotency_key();
        assert_ne!(a, b);
        assert_eq!(a.len(), "refrain-cli-".len() + 32);
        assert!(a.bytes().all(|c| c.is_ascii_graphic()));
    }
}
