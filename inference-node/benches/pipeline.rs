//! Pipeline benchmark on the analytic test bundle (CPU unless REFRAIN_DEVICE says otherwise).
//! Prints a table: time per sampling step at N = 2048 and 6144 frames with the CFG branches
//! batched (B = 2) and separate, VAE decode time chunked vs unchunked, and the share of a whole
//! generation's wall time spent outside ONNX Runtime (the pipeline's own overhead).
//!
//! Run: `cargo bench -p refrain-inference --bench pipeline`.

use std::path::Path;
use std::time::{Duration, Instant};

use refrain_inference::bundle::{Bundle, Solver};
use refrain_inference::pipeline::{GenerateRequest, Generator, GeneratorConfig};
use refrain_inference::runtime::{Runtime, RuntimeConfig};
use refrain_inference::sampler::{
    self, CfgMode, Dit, SampleInputs, SamplerSettings, LATENT_DIM, STYLE_DIM,
};
use refrain_inference::style::StyleSource;
use refrain_inference::tensor::{Graph, Precision};
use refrain_inference::vae::Vae;
use tokio_util::sync::CancellationToken;

const REPEATS: usize = 3;

fn best<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..REPEATS {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        last = Some(r);
    }
    (best, last.expect("REPEATS > 0"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle");
    let device = std::env::var("REFRAIN_DEVICE")
        .unwrap_or_else(|_| "cpu".into())
        .parse()?;
    let runtime = Runtime::init(RuntimeConfig {
        device,
        ..RuntimeConfig::default()
    })?;
    let bundle = Bundle::load(&dir)?;
    let m = &bundle.manifest;
    let full = m
        .dit
        .iter()
        .find(|d| !d.fixed_frames)
        .expect("test bundle has a full DiT");
    let mut dit = Dit::new(
        Graph::new("dit full", runtime.session(&bundle.file(&full.file))?),
        true,
    )?;
    println!(
        "device: {}, ONNX Runtime: {}",
        runtime.device(),
        runtime.library().display()
    );
    println!();
    println!("| what | N | setting | time |");
    println!("|---|---|---|---|");
    let steps = 9u32; // 8 Euler steps per measurement
    for n in [2048usize, 6144] {
        let inputs = SampleInputs {
            frames: n,
            variants: 1,
            cond: vec![0.0; n * LATENT_DIM],
            text: (0..n as i64).map(|i| i % 80).collect(),
            style: vec![1.0 / (STYLE_DIM as f32).sqrt(); STYLE_DIM],
            negative: vec![-1.0 / (STYLE_DIM as f32).sqrt(); STYLE_DIM],
            duration: n as f32 / 6144.0,
            noise: sampler::noise(1, 1, n, Precision::F32),
            init: None,
        };
        for (mode, label) in [
            (CfgMode::Batched, "CFG batched (B=2)"),
            (CfgMode::Separate, "CFG separate (2 × B=1)"),
        ] {
            let settings = SamplerSettings {
                steps,
                cfg_strength: 4.0,
                solver: Solver::Euler,
                sway_coef: None,
                cfg_mode: mode,
            };
            // One measured run for the time spent outside ONNX Runtime, then the best of N.
            let (busy0, t0) = (dit.graph.busy, Instant::now());
            sampler::sample(&mut dit, &inputs, &settings, |_, _| Ok(())).expect("sampling");
            let outside = t0.elapsed().saturating_sub(dit.graph.busy - busy0);
            let (t, _) = best(|| {
                sampler::sample(&mut dit, &inputs, &settings, |_, _| Ok(())).expect("sampling")
            });
            println!(
                "| sampling step | {n} | {label} | {:.3} ms ({:.3} ms of it outside ONNX Runtime) |",
                t.as_secs_f64() * 1e3 / (steps - 1) as f64,
                outside.as_secs_f64() * 1e3 / (steps - 1) as f64
            );
        }
    }
    let mut vae = Vae::new(
        Graph::new(
            "vae decoder",
            runtime.session(&bundle.file(&m.vae.decoder))?,
        ),
        None,
        m.vae.chunk_frames,
        m.vae.overlap_frames,
        m.audio.hop,
    )?;
    for n in [2048usize, 6136] {
        let latent: Vec<f32> = (0..n * LATENT_DIM)
            .map(|i| ((i % 97) as f32 - 48.0) / 48.0)
            .collect();
        for chunked in [false, true] {
            let (t, _) = best(|| vae.decode(&latent, chunked, || Ok(())).expect("decode"));
            let label = if chunked {
                "chunked (128/32)"
            } else {
                "unchunked"
            };
            println!(
                "| VAE decode | {n} | {label} | {:.1} ms |",
                t.as_secs_f64() * 1e3
            );
        }
    }
    drop((dit, vae));

    let mut generator = Generator::load(
        &dir,
        GeneratorConfig {
            runtime: RuntimeConfig {
                device,
                ..RuntimeConfig::default()
            },
            ..GeneratorConfig::default()
        },
    )?;
    let lrc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo.lrc"),
    )?;
    for seconds in [95u32, 285] {
        for chunked in [false, true] {
            let mut req = GenerateRequest::new(
                lrc.clone(),
                StyleSource::Prompt("bright acoustic pop".into()),
                seconds,
            );
            req.chunked = chunked;
            generator.generate(&req, &CancellationToken::new(), &mut |_| {})?; // warm-up
            let before = generator.onnx_time();
            let t = Instant::now();
            generator.generate(&req, &CancellationToken::new(), &mut |_| {})?;
            let wall = t.elapsed();
            let onnx = generator.onnx_time() - before;
            let outside = wall.saturating_sub(onnx);
            println!(
                "| whole song | {seconds} s | {} | {:.1} ms total, {:.1} ms outside ONNX Runtime ({:.1} %) |",
                if chunked { "chunked" } else { "unchunked" },
                wall.as_secs_f64() * 1e3,
                outside.as_secs_f64() * 1e3,
                100.0 * outside.as_secs_f64() / wall.as_secs_f64()
            );
        }
    }
    Ok(())
}
