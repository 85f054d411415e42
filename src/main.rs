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
    /// Generate one song on this machine and write it as a WAV file.
    Generate(cli::generate::GenerateArgs),
    /// Print the frame-aligned lyric token ids of an LRC file as a JSON array.
    Lyrics(cli::lyrics::LyricsArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => cli::generate::run(args),
        Command::Lyrics(args) => cli::lyrics::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
