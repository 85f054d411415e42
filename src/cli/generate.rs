//! `refrain generate`: one song on this machine, with a progress bar on a terminal. The same
//! pipeline the inference nodes run, without the service around it.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use protocol::{ProgressEvent, Stage};
use refrain_inference::audio;
use refrain_inference::pipeline::{
    self, EditRequest, GenerateRequest, Generator, GeneratorConfig, InitRequest,
};
use refrain_inference::runtime::{Device, RuntimeConfig};
use refrain_inference::sampler::CfgMode;
use refrain_inference::style::StyleSource;
use tokio_util::sync::CancellationToken;

use super::{read_text, BundleArgs};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// LRC lyrics file (UTF-8). Without it the song is instrumental. Plain text without
    /// timestamps is spread evenly over the song.
    #[arg(long)]
    lrc: Option<PathBuf>,
    /// Style as a text prompt, e.g. "upbeat pop with piano".
    #[arg(
        long,
        conflicts_with = "ref_audio",
        required_unless_present = "ref_audio"
    )]
    prompt: Option<String>,
    /// Style from a reference recording (WAV, MP3 or FLAC, at least 10 s).
    #[arg(long)]
    ref_audio: Option<PathBuf>,
    /// Song length in seconds: 95 (base model) or 96 to 285 (full model).
    #[arg(long, default_value_t = 95)]
    length: u32,
    /// Seed of the start noise: the same seed and bundle give the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Time-grid points of the sampler (32 = the reference's 31 Euler steps).
    #[arg(long)]
    steps: Option<u32>,
    /// Classifier-free guidance strength (the reference uses 4.0).
    #[arg(long)]
    cfg: Option<f32>,
    /// Decode the VAE in 128-frame chunks (less memory, as the reference's --chunked).
    #[arg(long)]
    chunked: bool,
    /// Number of variants generated together (1 to 5); variant k > 1 goes to OUT-k.wav.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Edit mode: regenerate --edit-segments of --ref-song and keep the rest.
    #[arg(long, requires_all = ["ref_song", "edit_segments"])]
    edit: bool,
    /// The song to edit (WAV, MP3 or FLAC).
    #[arg(long, requires = "edit")]
    ref_song: Option<PathBuf>,
    /// Spans to regenerate as JSON, e.g. '[[-1,25],[50.0,-1]]' (-1 = song start or end).
    #[arg(long, requires = "edit")]
    edit_segments: Option<String>,
    /// Start the sampler from this song (WAV, MP3 or FLAC, at least --length long) partly
    /// re-noised instead of pure noise: its sound and structure with these lyrics and style
    /// (Refrain's addition to DiffRhythm; the Riffusion API's swap_sound). Needs --strength.
    #[arg(long, requires = "strength", conflicts_with = "edit")]
    init: Option<PathBuf>,
    /// Noise strength of --init, 0 to 1: 0 gives the song back, 1 is a new song (the same
    /// bytes as without --init); the sampler runs the steps after t0 = 1 - strength.
    #[arg(long, requires = "init")]
    strength: Option<f32>,
    /// Output WAV file.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    bundle: BundleArgs,
    /// Execution device: cpu, cuda, cuda:N, tensorrt or tensorrt:N.
    #[arg(long, env = "REFRAIN_DEVICE", default_value = "cpu")]
    device: Device,
    /// Path of libonnxruntime.so (default: ORT_DYLIB_PATH, then .ort/lib).
    #[arg(long, env = "REFRAIN_ORT_LIBRARY")]
    ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// How the CFG branches run: auto (one batch of 2 when the graph allows), batched,
    /// separate or single (each variant and branch alone: the least memory).
    #[arg(long, default_value = "auto")]
    cfg_mode: CfgMode,
}

/// `OUT.wav` for the first variant, `OUT-2.wav`… for the others.
fn variant_path(out: &Path, k: usize) -> PathBuf {
    if k == 0 {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "wav".into());
    out.with_file_name(format!("{stem}-{}.{ext}", k + 1))
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    const MAX_REFERENCE_SECONDS: f64 = 600.0;
    let lyrics = match &args.lrc {
        Some(p) => read_text(p, "lyrics file")?,
        None => String::new(),
    };
    let style = match (&args.prompt, &args.ref_audio) {
        (Some(p), None) => StyleSource::Prompt(p.clone()),
        (None, Some(path)) => StyleSource::Audio(
            audio::decode_file(path, MAX_REFERENCE_SECONDS)
                .with_context(|| format!("reference audio {}", path.display()))?,
        ),
        _ => bail!("give exactly one of --prompt or --ref-audio"),
    };
    let edit = if args.edit {
        let (Some(song), Some(segments)) = (&args.ref_song, &args.edit_segments) else {
            bail!("--edit needs --ref-song and --edit-segments");
        };
        Some(EditRequest {
            reference: audio::decode_file(song, MAX_REFERENCE_SECONDS)
                .with_context(|| format!("reference song {}", song.display()))?,
            segments: pipeline::parse_edit_segments(segments)?,
        })
    } else {
        None
    };
    let init = match (&args.init, args.strength) {
        (Some(song), Some(strength)) => Some(InitRequest {
            song: audio::decode_file(song, MAX_REFERENCE_SECONDS)
                .with_context(|| format!("init song {}", song.display()))?,
            strength,
        }),
        (None, None) => None,
        _ => bail!("--init and --strength go together"),
    };
    let request = GenerateRequest {
        lyrics,
        style,
        seconds: args.length,
        seed: args.seed,
        steps: args.steps,
        cfg_strength: args.cfg,
        variants: args.batch,
        chunked: args.chunked,
        edit,
        init,
    };
    let config = GeneratorConfig {
        runtime: RuntimeConfig {
            library: args.ort_library.clone(),
            device: args.device,
            intra_threads: args.threads,
            engine_cache: None,
        },
        cfg_mode: args.cfg_mode,
        max_reference_seconds: MAX_REFERENCE_SECONDS,
        ..GeneratorConfig::default()
    };
    let mut generator = Generator::load(&args.bundle.bundle, config)
        .with_context(|| format!("loading bundle {}", args.bundle.bundle.display()))?;
    generator.validate(&request)?;

    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}",
            )
            .expect("valid template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut on_progress = |e: ProgressEvent| {
        bar.set_position((e.percent * 10.0) as u64);
        let eta = e
            .eta_seconds
            .map(|s| format!(", ETA {s:.1} s"))
            .unwrap_or_default();
        let what = match e.stage {
            Stage::Sampling => format!("sampling step {}/{}", e.step, e.total),
            Stage::Decode => format!("decoding {}/{}", e.step, e.total),
            other => other.to_string(),
        };
        bar.set_message(format!("{what}{eta}"));
    };
    let cancel = CancellationToken::new();
    let out = generator.generate(&request, &cancel, &mut on_progress)?;
    bar.finish_and_clear();

    for s in &out.lyrics.skipped {
        eprintln!("lyrics line {} skipped: {}", s.line_no, s.reason);
    }
    for (line, why) in &out.lyrics.track.dropped {
        eprintln!("lyrics line {line} not used: {why}");
    }
    for (k, song) in out.songs.iter().enumerate() {
        let path = variant_path(&args.output, k);
        audio::write_wav_i16(&path, song, 2, out.sample_rate)?;
        eprintln!(
            "wrote {} ({:.2} s, {} frames, {} model, seed {})",
            path.display(),
            (song.len() / 2) as f64 / out.sample_rate as f64,
            out.frames,
            out.model,
            args.seed
        );
    }
    let t = &out.timings;
    eprintln!(
        "took {:.2} s: prepare {:.2} s, sampling {:.2} s, decode {:.2} s",
        t.total.as_secs_f64(),
        t.prepare.as_secs_f64(),
        t.sampling.as_secs_f64(),
        t.decode.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_paths() {
        assert_eq!(
            variant_path(Path::new("a/out.wav"), 0),
            PathBuf::from("a/out.wav")
        );
        assert_eq!(
            variant_path(Path::new("a/out.wav"), 1),
            PathBuf::from("a/out-2.wav")
        );
        assert_eq!(
            variant_path(Path::new("song"), 3),
            PathBuf::from("song-4.wav")
        );
    }

    /// `--cfg-mode` takes every mode the sampler has, as `inference.cfg_mode` does.
    #[test]
    fn every_cfg_mode_is_accepted() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            generate: GenerateArgs,
        }
        let parse = |mode: &str| {
            <Cli as clap::Parser>::try_parse_from([
                "generate",
                "--prompt",
                "pop",
                "-o",
                "out.wav",
                "--cfg-mode",
                mode,
            ])
            .map(|cli| cli.generate.cfg_mode)
        };
        assert_eq!(parse("single").unwrap(), CfgMode::Single);
        assert_eq!(parse("separate").unwrap(), CfgMode::Separate);
        assert!(parse("fast").is_err());
    }
}
