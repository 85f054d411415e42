//! The node's device settings on the test bundle: a memory limit that ONNX Runtime really hits
//! (out-of-memory retries of the DiT with fewer rows per call and of the VAE chunked, each
//! giving exactly the songs of a run with the smaller setting), and IO binding giving the same
//! songs as plain runs, including the sampler loop that keeps the latent on the device (the
//! CFG/Euler update as a graph, with batched CFG).
//!
//! On the CPU the limit caps a shared CPU arena, registered once per process, so only the one
//! test below uses it. `REFRAIN_TEST_DEVICE=cuda` runs the same tests on a GPU
//! (`tools/gpu-check.sh`), the limit then being the CUDA provider's `gpu_mem_limit`
//! (`REFRAIN_TEST_MEMORY_LIMIT` bytes, default 8 MiB).

mod common;

use refrain_inference::pipeline::{GenerateRequest, Generator, GeneratorConfig};
use refrain_inference::runtime::{Device, DeviceSettings, Runtime, RuntimeConfig};
use refrain_inference::sampler::{self, CfgMode, Layout, SampleInputs, SamplerSettings};
use refrain_inference::style::StyleSource;
use refrain_inference::tensor::{Graph, Precision};
use tokio_util::sync::CancellationToken;

fn device() -> Device {
    std::env::var("REFRAIN_TEST_DEVICE")
        .ok()
        .map(|d| d.parse().expect("REFRAIN_TEST_DEVICE"))
        .unwrap_or(Device::Cpu)
}

fn limit() -> u64 {
    std::env::var("REFRAIN_TEST_MEMORY_LIMIT")
        .ok()
        .map(|l| l.parse().expect("REFRAIN_TEST_MEMORY_LIMIT"))
        .unwrap_or(8 << 20)
}

fn config(cfg_mode: CfgMode) -> GeneratorConfig {
    GeneratorConfig {
        runtime: RuntimeConfig {
            device: device(),
            ..RuntimeConfig::default()
        },
        cfg_mode,
        ..GeneratorConfig::default()
    }
}

fn song(variants: usize, chunked: bool) -> GenerateRequest {
    let lrc = std::fs::read_to_string(common::workspace().join("examples/demo.lrc")).unwrap();
    let mut req = GenerateRequest::new(lrc, StyleSource::Prompt("bright acoustic pop".into()), 285);
    req.seed = 11;
    req.steps = Some(4);
    req.variants = variants;
    req.chunked = chunked;
    req
}

fn generate(
    g: &mut Generator,
    req: &GenerateRequest,
) -> refrain_inference::pipeline::GenerateOutput {
    g.generate(req, &CancellationToken::new(), &mut |_| {})
        .expect("generation succeeds")
}

fn sampler_inputs(frames: usize, variants: usize) -> SampleInputs {
    SampleInputs {
        frames,
        variants,
        cond: vec![0.0; frames * 64],
        text: (0..frames as i64).map(|i| i % 50).collect(),
        style: (0..512).map(|i| (i as f32 / 512.0).sin()).collect(),
        negative: (0..512).map(|i| (i as f32 / 97.0).cos()).collect(),
        duration: 1.0,
        noise: sampler::noise(5, variants, frames, Precision::F32),
        init: None,
    }
}

fn settings(cfg_mode: CfgMode) -> SamplerSettings {
    SamplerSettings {
        steps: 4,
        cfg_strength: 4.0,
        solver: refrain_inference::bundle::Solver::Euler,
        sway_coef: None,
        cfg_mode,
    }
}

fn full_dit(runtime: &Runtime) -> sampler::Dit {
    dit_from(runtime, "dit_full.onnx")
}

fn dit_from(runtime: &Runtime, file: &str) -> sampler::Dit {
    let path = common::bundle_dir().join(file);
    let mut dit =
        sampler::Dit::new(Graph::new(file, runtime.session(&path).unwrap()), true).unwrap();
    dit.bind_io(runtime).unwrap();
    dit
}

/// [`dit_from`] with the update graph even on the CPU (a GPU uses it by default).
fn dit_with_update_graph(runtime: &Runtime, file: &str) -> sampler::Dit {
    let mut dit = dit_from(runtime, file);
    dit.use_update_graph(runtime).unwrap();
    dit
}

/// One test, because the CPU limit is process-wide: a 285 s song of two variants asked for
/// with the 2B batch and unchunked decoding runs out of memory in both, falls back, and gives
/// the songs of an unlimited run with CFG separate and chunked decoding, bit for bit; the
/// sampler alone falls back from separate to one row per call on a longer latent.
#[test]
fn out_of_memory_retries_give_the_songs_of_the_smaller_setting() {
    if !common::ort_available() {
        return;
    }
    let limited = DeviceSettings {
        memory_limit: Some(limit()),
        io_binding: None,
    };
    // The limit is real: the decoder cannot take a 285 s latent at once under it.
    let runtime = Runtime::init_with(config(CfgMode::Auto).runtime, limited).unwrap();
    let mut decoder = Graph::new(
        "vae decoder",
        runtime
            .session(&common::bundle_dir().join("vae_decoder.onnx"))
            .unwrap(),
    );
    let latent = ort::value::Tensor::from_array((vec![1i64, 64, 6136], vec![0f32; 64 * 6136]))
        .unwrap()
        .into_dyn();
    let e = decoder
        .run(vec![("latent", (&latent).into())])
        .map(|_| ())
        .expect_err("the decoder runs out of memory");
    eprintln!("unchunked decode under the limit: {e}");
    assert!(e.is_out_of_memory(), "{e}");
    drop(decoder);

    let limits = GeneratorConfig {
        device: limited,
        ..config(CfgMode::Batched)
    };
    let mut small = Generator::load(&common::bundle_dir(), limits).expect("bundle loads");
    let got = generate(&mut small, &song(2, false));
    eprintln!("fallbacks: {:?}", got.fallbacks);
    assert_eq!(got.fallbacks.len(), 2, "{:?}", got.fallbacks);
    assert!(got.fallbacks[0].contains("separate"), "{:?}", got.fallbacks);
    let mut plain = Generator::load(&common::bundle_dir(), config(CfgMode::Separate)).unwrap();
    let want = generate(&mut plain, &song(2, true));
    assert!(want.fallbacks.is_empty());
    assert!(
        got.songs == want.songs,
        "songs differ from the smaller setting's"
    );
    drop(small);

    // The sampler alone: two variants of a latent twice as long, separate branches (two rows
    // per call) do not fit, one row per call does.
    let mut dit = full_dit(&runtime);
    let inputs = sampler_inputs(12272, 2);
    let x = sampler::sample(&mut dit, &inputs, &settings(CfgMode::Separate), |_, _| {
        Ok(())
    })
    .expect("sampler falls back");
    assert_eq!(dit.last_layout, Some(Layout::Single));
    let unlimited = Runtime::init(config(CfgMode::Auto).runtime).unwrap();
    let mut free = full_dit(&unlimited);
    let want = sampler::sample(
        &mut free,
        &inputs,
        &settings(CfgMode::Single),
        |_, _| Ok(()),
    )
    .unwrap();
    assert!(
        x == want,
        "sampler result differs from the single-row run's"
    );
}

/// IO binding (on the CPU through the node setting) gives the plain runs' songs bit for bit,
/// in every CFG layout, the f32 and the f16 DiT.
#[test]
fn io_binding_gives_the_same_songs() {
    if !common::ort_available() {
        return;
    }
    for manifest in ["bundle.toml", "bundle-f16.toml"] {
        let path = common::bundle_dir().join(manifest);
        for mode in [CfgMode::Batched, CfgMode::Separate, CfgMode::Single] {
            let bound = DeviceSettings {
                io_binding: Some(true),
                ..DeviceSettings::default()
            };
            let plain = DeviceSettings {
                io_binding: Some(false),
                ..DeviceSettings::default()
            };
            let with = |device| GeneratorConfig {
                device,
                ..config(mode)
            };
            let mut a = Generator::load(&path, with(bound)).unwrap();
            let mut b = Generator::load(&path, with(plain)).unwrap();
            let mut req = song(2, true);
            req.seconds = 120;
            let (x, y) = (generate(&mut a, &req), generate(&mut b, &req));
            assert!(
                x.songs == y.songs,
                "{manifest} {mode:?}: IO binding changes the song"
            );
        }
    }
}

/// With IO binding and batched CFG the update runs as a graph beside the DiT and the latent
/// stays on the device; the final latents are those of the host update, bit for bit, in both
/// precisions, from noise and from a re-noised song (init), for one and for two variants.
#[test]
fn the_update_graph_gives_the_host_updates_numbers() {
    if !common::ort_available() {
        return;
    }
    let on = DeviceSettings {
        io_binding: Some(true),
        ..DeviceSettings::default()
    };
    let off = DeviceSettings {
        io_binding: Some(false),
        ..DeviceSettings::default()
    };
    let device = Runtime::init_with(config(CfgMode::Batched).runtime, on).unwrap();
    let host = Runtime::init_with(config(CfgMode::Batched).runtime, off).unwrap();
    for (file, p) in [
        ("dit_full.onnx", Precision::F32),
        ("dit_full_f16.onnx", Precision::F16),
    ] {
        let mut a = dit_with_update_graph(&device, file);
        let mut b = dit_from(&host, file);
        assert!(a.step.is_some() && b.step.is_none(), "{file}");
        for variants in [1, 2] {
            let mut inputs = sampler_inputs(512, variants);
            inputs.noise = sampler::noise(5, variants, 512, p);
            let s = settings(CfgMode::Batched);
            let mut steps = Vec::new();
            let x = sampler::sample(&mut a, &inputs, &s, |k, n| {
                steps.push((k, n));
                Ok(())
            })
            .unwrap();
            let y = sampler::sample(&mut b, &inputs, &s, |_, _| Ok(())).unwrap();
            assert_eq!(
                steps,
                [(1, 3), (2, 3), (3, 3)],
                "{file}: one report per step"
            );
            assert!(
                x == y,
                "{file}, {variants} variant(s): the update graph changes the latents"
            );
            assert!(x.iter().any(|&v| v != 0.0));
            // Init: from a song re-noised halfway, fewer steps.
            inputs.init = Some(sampler::Init {
                latent: (0..512 * 64)
                    .map(|i| ((i % 97) as f32 / 97.0) - 0.5)
                    .collect(),
                start: 2,
            });
            let x = sampler::sample(&mut a, &inputs, &s, |_, _| Ok(())).unwrap();
            let y = sampler::sample(&mut b, &inputs, &s, |_, _| Ok(())).unwrap();
            assert!(
                x == y,
                "{file}, {variants} variant(s), init: the latents differ"
            );
        }
    }
}

/// Per-step time of the sampler with and without IO binding on the test bundle's full DiT at
/// 285 s (6136 frames), CFG batched and separate: what the per-step copies cost on this device.
/// Not a check; `tools/gpu-check.sh` prints it on CUDA (`--ignored`).
#[test]
#[ignore]
fn io_binding_timings() {
    if !common::ort_available() {
        return;
    }
    let inputs = sampler_inputs(6136, 1);
    for mode in [CfgMode::Batched, CfgMode::Separate] {
        for io_binding in [false, true] {
            let settings_io = DeviceSettings {
                io_binding: Some(io_binding),
                ..DeviceSettings::default()
            };
            let runtime = Runtime::init_with(config(mode).runtime, settings_io).unwrap();
            let mut dit = full_dit(&runtime);
            let mut s = settings(mode);
            s.steps = 33;
            sampler::sample(&mut dit, &inputs, &s, |_, _| Ok(())).unwrap();
            let started = std::time::Instant::now();
            sampler::sample(&mut dit, &inputs, &s, |_, _| Ok(())).unwrap();
            let per_step = started.elapsed().as_secs_f64() * 1e3 / 32.0;
            println!(
                "io timing: device {} CFG {mode:?} IO binding {}: {per_step:.3} ms per step",
                device(),
                if io_binding { "on " } else { "off" }
            );
        }
    }
}
