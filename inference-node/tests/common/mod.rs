//! Shared helpers of the pipeline tests: finding ONNX Runtime, loading the test bundle once per
//! test binary, and the oracle that reads lyric tokens and style back out of a produced WAV.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use refrain_inference::pipeline::{Generator, GeneratorConfig};
use refrain_inference::runtime::library_candidates;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn bundle_dir() -> PathBuf {
    workspace().join("models/test-bundle")
}

/// Whether ONNX Runtime can be found. Outside CI a missing library skips the test (with a
/// message); in CI (`CI` set) it fails, so a broken setup never passes silently.
pub fn ort_available() -> bool {
    if library_candidates(None).iter().any(|p| p.is_file()) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("ONNX Runtime not found in CI: run tools/fetch-onnxruntime.sh");
    }
    eprintln!("skipped: ONNX Runtime not found (run tools/fetch-onnxruntime.sh)");
    false
}

fn lock(m: &'static Mutex<Generator>) -> MutexGuard<'static, Generator> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The f32 test bundle, loaded once per test binary.
pub fn generator() -> MutexGuard<'static, Generator> {
    static G: OnceLock<Mutex<Generator>> = OnceLock::new();
    lock(G.get_or_init(|| {
        Mutex::new(
            Generator::load(&bundle_dir(), GeneratorConfig::default()).expect("test bundle loads"),
        )
    }))
}

/// The same bundle with the f16 DiTs.
pub fn generator_f16() -> MutexGuard<'static, Generator> {
    static G: OnceLock<Mutex<Generator>> = OnceLock::new();
    lock(G.get_or_init(|| {
        Mutex::new(
            Generator::load(
                &bundle_dir().join("bundle-f16.toml"),
                GeneratorConfig::default(),
            )
            .expect("f16 test bundle loads"),
        )
    }))
}

/// The facts of `oracle.json`.
pub struct Oracle {
    pub lyric_channels: usize,
    pub style: std::ops::Range<usize>,
    pub bins: Vec<usize>,
    pub hop: usize,
}

impl Oracle {
    pub fn load() -> Oracle {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(bundle_dir().join("oracle.json")).unwrap(),
        )
        .unwrap();
        let style = v["style_channels"].as_array().unwrap();
        Oracle {
            lyric_channels: v["lyric_channels"].as_u64().unwrap() as usize,
            style: style[0].as_u64().unwrap() as usize..style[1].as_u64().unwrap() as usize,
            bins: v["basis_bins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as usize)
                .collect(),
            hop: v["hop"].as_u64().unwrap() as usize,
        }
    }

    /// The latent channel a token sounds on; `None` for pad.
    pub fn channel(&self, token: i64) -> Option<usize> {
        (token > 0).then(|| (token as usize - 1) % self.lyric_channels)
    }

    /// Projects every frame of the left channel of an interleaved i16 song onto the 64 basis
    /// sinusoids: `coeffs[f][c]`, in units of the latent value times the song's gain.
    pub fn project(&self, song: &[i16]) -> Vec<[f32; 64]> {
        let left: Vec<f32> = song
            .iter()
            .step_by(2)
            .map(|&s| s as f32 / 32767.0)
            .collect();
        let tables: Vec<Vec<f32>> = self
            .bins
            .iter()
            .map(|&k| {
                (0..self.hop)
                    .map(|n| {
                        (2.0 * std::f64::consts::PI * (k * n % self.hop) as f64 / self.hop as f64)
                            .sin() as f32
                    })
                    .collect()
            })
            .collect();
        left.chunks_exact(self.hop)
            .map(|frame| {
                let mut out = [0f32; 64];
                for (c, table) in tables.iter().enumerate() {
                    out[c] = frame.iter().zip(table).map(|(a, b)| a * b).sum::<f32>() * 2.0
                        / self.hop as f32;
                }
                out
            })
            .collect()
    }

    /// The dominant lyric channel of each frame, `None` where the lyric band is silent
    /// (below half the loudest lyric coefficient of the song).
    pub fn pitches(&self, coeffs: &[[f32; 64]]) -> Vec<Option<usize>> {
        let band = |f: &[f32; 64]| {
            f[..self.lyric_channels]
                .iter()
                .enumerate()
                .map(|(c, v)| (c, v.abs()))
                .fold((0, 0f32), |a, b| if b.1 > a.1 { b } else { a })
        };
        let loudest = coeffs.iter().map(|f| band(f).1).fold(0f32, f32::max);
        coeffs
            .iter()
            .map(|f| {
                let (c, v) = band(f);
                (v > loudest / 2.0).then_some(c)
            })
            .collect()
    }

    /// The pitch track a token track should produce.
    pub fn expected(&self, tokens: &[i64]) -> Vec<Option<usize>> {
        tokens.iter().map(|&t| self.channel(t)).collect()
    }
}

/// Decodes a WAV file produced by the pipeline into interleaved i16.
pub fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    let s = r.samples::<i16>().map(|s| s.unwrap()).collect();
    (spec, s)
}

/// A worker-loop job numbered `n`: the first byte of its id (so the second digit of the id's
/// hex form) and its handle, with `spec` (the job spec's JSON).
pub fn assignment(n: u8, spec: serde_json::Value) -> protocol::node::Assignment {
    let mut id = [0u8; 16];
    id[0] = n;
    protocol::node::Assignment {
        id: protocol::JobId::from_bytes(id),
        attempt: 1,
        spec: serde_json::from_value(spec).expect("a job spec"),
        handle: u64::from(n),
        cancel: tokio_util::sync::CancellationToken::new(),
    }
}
