//! `refrain lyrics`: the lyric token track a request would get, as JSON — a debugging and
//! parity tool (compare with the reference `get_lrc_token` on the same file and vocabulary).

use std::path::PathBuf;

use anyhow::Context;
use refrain_inference::bundle::Bundle;
use refrain_inference::lyrics::lrc::LyricsLimits;
use refrain_inference::pipeline;

use super::{read_text, BundleArgs};

#[derive(Debug, clap::Args)]
pub struct LyricsArgs {
    /// LRC file (UTF-8).
    #[arg(long)]
    lrc: PathBuf,
    /// Song length in seconds (95, or 96 to 285); decides the model and frame count.
    #[arg(long)]
    length: u32,
    /// Phoneme vocabulary JSON (`{"vocab": {symbol: id}}`) instead of the bundle's, e.g. the
    /// `g2p/g2p/vocab.json` of a DiffRhythm checkout for parity checks.
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Mandarin data directory (the layout of a DiffRhythm checkout's `g2p/sources/`, see
    /// docs/mandarin.md) instead of the bundle's; also enables Chinese lyrics. Its polyphone
    /// model, if there, runs on the CPU.
    #[arg(long)]
    mandarin: Option<PathBuf>,
    #[command(flatten)]
    bundle: BundleArgs,
    /// Also print each line's placement and the skipped lines on stderr.
    #[arg(long)]
    verbose: bool,
}

/// The encoder `refrain lyrics` uses: ONNX Runtime (CPU) is loaded only when there is a
/// polyphone model to run.
fn line_encoder(
    bundle: &Bundle,
    vocab: Option<&std::path::Path>,
    mandarin: Option<&std::path::Path>,
) -> anyhow::Result<refrain_inference::lyrics::g2p::LineEncoder> {
    use refrain_inference::runtime::{Device, Runtime, RuntimeConfig};
    if refrain_model::track::polyphone_model_file(bundle, mandarin).is_none() {
        return Ok(refrain_model::track::line_encoder_with(
            bundle, vocab, mandarin, None,
        )?);
    }
    let runtime = Runtime::init(RuntimeConfig {
        library: None,
        device: Device::Cpu,
        intra_threads: None,
        engine_cache: None,
    })?;
    Ok(refrain_inference::polyphone::line_encoder(
        bundle, &runtime, vocab, mandarin,
    )?)
}

pub fn run(args: LyricsArgs) -> anyhow::Result<()> {
    let bundle = Bundle::load(&args.bundle.bundle)?;
    let encoder = line_encoder(&bundle, args.vocab.as_deref(), args.mandarin.as_deref())?;
    let text = read_text(&args.lrc, "lyrics file")?;
    let lyrics = pipeline::lyric_track(
        &bundle,
        &encoder,
        &text,
        args.length,
        &LyricsLimits::default(),
    )?;
    if args.verbose {
        for p in &lyrics.track.placed {
            eprintln!(
                "line {}: frames {}..{} (requested {}, {} truncated)",
                p.line_no, p.start_frame, p.end_frame, p.requested_frame, p.truncated
            );
        }
        for (line, why) in &lyrics.track.dropped {
            eprintln!("line {line} dropped: {why}");
        }
    }
    for s in &lyrics.skipped {
        eprintln!("line {} skipped: {}", s.line_no, s.reason);
    }
    println!(
        "{}",
        serde_json::to_string(&lyrics.track.tokens).context("serialising tokens")?
    );
    Ok(())
}
