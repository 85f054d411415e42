//! `refrain`: one binary, one subcommand per role. This file only parses the command line and
//! hands over to the library crates; the commands themselves live in `src/cli/`.

mod cli;

use clap::{Parser, Subcommand};

/// Refrain: self-hosted DiffRhythm song generation.
#[derive(Debug, Parser)]
#[command(name = "refrain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: HTTP APIs, job store, queue and the inference nodes.
    Serve(cli::serve::ServeArgs),
    /// Run one inference node of the distributed deployment (NATS JetStream).
    Node(cli::node::NodeArgs),
    /// Run the chat bots of the [bots] section (Telegram), clients of a Refrain server.
    Bots(cli::bots::BotsArgs),
    /// Generate one song on this machine and write it as a WAV file.
    Generate(cli::generate::GenerateArgs),
    /// Run the sampler alone on NumPy inputs and write the final latent (parity checks).
    Sample(cli::sample::SampleArgs),
    /// Print the frame-aligned lyric token ids of an LRC file as a JSON array.
    Lyrics(cli::lyrics::LyricsArgs),
    /// Ask a Refrain server for a song (its HTTP API); optionally wait and download it.
    Submit(cli::client::submit::SubmitArgs),
    /// List, show, cancel and download the jobs of a Refrain server.
    Jobs(cli::client::jobs::JobsArgs),
    /// The schedules of a Refrain server: list, next fire times, run now.
    Schedules(cli::client::schedules::SchedulesArgs),
    /// Manage the API keys of Refrain's own API (`add NAME`, `list`).
    Keys(cli::keys::KeysArgs),
    /// Check this machine's set-up: one line per check, with the fix for each that fails.
    Doctor(cli::doctor::DoctorArgs),
    /// Copy the data folder (job store, uploads, results, keys) consistently into a folder.
    Backup(cli::backup::BackupArgs),
}

/// The service and nodes log their work (ONNX Runtime's session details only as warnings);
/// one-shot commands only warnings.
fn default_log_level(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Serve(_) | Command::Node(_) | Command::Bots(_) => "info,ort=warn",
        // The report says what failed; library logs (a NATS client retrying) would only repeat it.
        Command::Doctor(_) => "off",
        _ => "warn",
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_level(&cli))),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: logs piped to files, journald or a test
        // harness carry no ANSI escape codes. `NO_COLOR` (any value) turns colour off too.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Node(args) => cli::node::run(args),
        Command::Bots(args) => cli::bots::run(args),
        Command::Generate(args) => cli::generate::run(args),
        Command::Sample(args) => cli::sample::run(args),
        Command::Lyrics(args) => cli::lyrics::run(args),
        Command::Submit(args) => cli::client::submit::run(args),
        Command::Jobs(args) => cli::client::jobs::run(args),
        Command::Schedules(args) => cli::client::schedules::run(args),
        Command::Keys(args) => cli::keys::run(args),
        Command::Doctor(args) => cli::doctor::run(args),
        Command::Backup(args) => cli::backup::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message before it
/// already contains (many error types print their source as part of their own message).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
