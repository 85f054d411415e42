//! The model bundle: a directory with a `bundle.toml` manifest and ONNX files
//! (`shared/MODEL_BUNDLE.md`). This module parses the manifest strictly — an unknown key is an
//! error so typos never pass silently — checks that every file it names exists, and answers the
//! one model question the rest of the pipeline asks: which DiT serves a requested song length.
//! [`checksums`] verifies the files against the bundle's `SHA256SUMS`.

pub mod checksums;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The manifest's file name inside a bundle directory.
pub const MANIFEST: &str = "bundle.toml";

/// Errors while loading a bundle.
#[derive(Debug, Error)]
pub enum BundleError {
    #[error("cannot read bundle manifest {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid bundle manifest {path}: {message}")]
    Parse { path: String, message: String },
    #[error("bundle manifest {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("bundle {bundle}: file {file} named by `{key}` does not exist")]
    MissingFile {
        bundle: String,
        key: String,
        file: String,
    },
}

/// `[audio]`: the fixed audio constants of DiffRhythm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSection {
    pub sample_rate: u32,
    pub channels: u32,
    pub latent_dim: usize,
    pub hop: usize,
}

/// The ODE solver of the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// torchdiffeq's fixed-grid Euler, the reference setting.
    Euler,
    /// torchdiffeq's fixed-grid midpoint (two DiT evaluations per step).
    Midpoint,
}

/// `[sampler]`: defaults a request may override.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplerSection {
    /// Time-grid points (the reference's `steps`): 32 points give 31 Euler steps.
    pub steps: u32,
    pub cfg_strength: f32,
    pub solver: Solver,
    /// Sway sampling coefficient (F5-TTS); absent means no warping, as in the reference CLI.
    #[serde(default)]
    pub sway_coef: Option<f32>,
}

/// `[[dit]]`: one DiT graph.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DitSection {
    pub name: String,
    pub file: PathBuf,
    /// Frames the model was trained for: 2048 (base) or 6144 (full).
    pub max_frames: usize,
    /// Whether the graph has the `duration` input (full model).
    pub duration_input: bool,
    /// Whether the frame count is always `max_frames` (base model).
    pub fixed_frames: bool,
    /// The base model's lyric placement rule: drop the last line that starts inside the song.
    pub drop_last_line: bool,
}

/// `[vae]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeSection {
    pub decoder: PathBuf,
    #[serde(default)]
    pub encoder: Option<PathBuf>,
    pub chunk_frames: usize,
    pub overlap_frames: usize,
}

/// `[style]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StyleSection {
    pub text_encoder: PathBuf,
    pub tokenizer: PathBuf,
    pub audio_encoder: PathBuf,
    pub audio_sample_rate: u32,
    pub audio_seconds: u32,
    pub negative: PathBuf,
}

/// `[lyrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LyricsSection {
    pub vocab: PathBuf,
    pub languages: Vec<String>,
    /// The Mandarin front end's data directory (`docs/mandarin.md`), required with "zh".
    #[serde(default)]
    pub mandarin: Option<PathBuf>,
}

impl LyricsSection {
    /// Files of the Mandarin data directory the bundle must have (relative to the bundle).
    pub fn mandarin_required(&self) -> Vec<PathBuf> {
        use crate::lyrics::g2p::mandarin::data::{LEXICON, PINYIN_TO_BOPOMOFO};
        self.mandarin
            .iter()
            .flat_map(|d| [d.join(LEXICON), d.join(PINYIN_TO_BOPOMOFO)])
            .collect()
    }

    /// The optional files of the Mandarin data directory (the polyphone model's).
    pub fn mandarin_optional(&self) -> Vec<PathBuf> {
        use crate::lyrics::g2p::mandarin::data::{BERT_VOCAB, POLYCHAR, POLYDICT, POLY_MODEL};
        self.mandarin
            .iter()
            .flat_map(|d| [POLYCHAR, POLYDICT, BERT_VOCAB, POLY_MODEL].map(|f| d.join(f)))
            .collect()
    }
}

/// The whole manifest, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub license: String,
    pub audio: AudioSection,
    pub sampler: SamplerSection,
    pub dit: Vec<DitSection>,
    pub vae: VaeSection,
    pub style: StyleSection,
    pub lyrics: LyricsSection,
}

/// A loaded bundle: the manifest plus the directory its relative paths are resolved against.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
}

/// The DiT chosen for one request and the frame count it runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelChoice {
    /// Index into `manifest.dit`.
    pub dit: usize,
    /// Frames generated (N).
    pub frames: usize,
    /// The model's `max_frames`.
    pub max_frames: usize,
}

impl Bundle {
    /// Loads a bundle from a directory (reading its `bundle.toml`) or from a manifest file
    /// (relative paths are resolved against the file's directory).
    pub fn load(path: &Path) -> Result<Bundle, BundleError> {
        let manifest_path = if path.is_dir() {
            path.join(MANIFEST)
        } else {
            path.to_path_buf()
        };
        let shown = manifest_path.display().to_string();
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| BundleError::Read {
            path: shown.clone(),
            source,
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| BundleError::Parse {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let dir = manifest_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let bundle = Bundle {
            manifest,
            dir,
            manifest_path,
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// Absolute-or-relative path of a file named in the manifest.
    pub fn file(&self, relative: &Path) -> PathBuf {
        self.dir.join(relative)
    }

    fn invalid(&self, message: impl Into<String>) -> BundleError {
        BundleError::Invalid {
            path: self.manifest_path.display().to_string(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), BundleError> {
        let m = &self.manifest;
        let a = &m.audio;
        if (a.sample_rate, a.channels, a.latent_dim, a.hop) != (44100, 2, 64, 2048) {
            return Err(self.invalid(format!(
                "[audio] must be sample_rate = 44100, channels = 2, latent_dim = 64, hop = 2048 \
                 (DiffRhythm's VAE); got {}, {}, {}, {}",
                a.sample_rate, a.channels, a.latent_dim, a.hop
            )));
        }
        if m.sampler.steps < 2 || m.sampler.steps > 1000 {
            return Err(self.invalid("[sampler] steps must be between 2 and 1000"));
        }
        if !m.sampler.cfg_strength.is_finite() || m.sampler.cfg_strength < 0.0 {
            return Err(self.invalid("[sampler] cfg_strength must be a finite number >= 0"));
        }
        if m.dit.is_empty() {
            return Err(self.invalid("at least one [[dit]] table is required"));
        }
        for (i, d) in m.dit.iter().enumerate() {
            if d.max_frames == 0 {
                return Err(self.invalid(format!("[[dit]] {}: max_frames must be > 0", d.name)));
            }
            if m.dit[..i].iter().any(|o| o.name == d.name) {
                return Err(self.invalid(format!("[[dit]] name {:?} appears twice", d.name)));
            }
        }
        if m.dit.iter().filter(|d| d.fixed_frames).count() > 1
            || m.dit.iter().filter(|d| !d.fixed_frames).count() > 1
        {
            return Err(self.invalid(
                "at most one fixed-length (base) and one variable-length (full) [[dit]] are supported",
            ));
        }
        let v = &m.vae;
        if v.chunk_frames == 0
            || v.overlap_frames >= v.chunk_frames
            || !v.overlap_frames.is_multiple_of(2)
        {
            return Err(self.invalid(
                "[vae] needs chunk_frames > overlap_frames >= 0 with an even overlap_frames",
            ));
        }
        if m.style.audio_sample_rate == 0 || m.style.audio_seconds == 0 {
            return Err(self.invalid("[style] audio_sample_rate and audio_seconds must be > 0"));
        }
        if m.lyrics.languages.is_empty() {
            return Err(self.invalid("[lyrics] languages must name at least one language"));
        }
        if m.lyrics.languages.iter().any(|l| l == "zh") && m.lyrics.mandarin.is_none() {
            return Err(self.invalid(
                "[lyrics] languages has \"zh\" but no `mandarin` data directory (docs/mandarin.md)",
            ));
        }
        let mut files: Vec<(String, &Path)> = m
            .dit
            .iter()
            .map(|d| (format!("dit.{}.file", d.name), d.file.as_path()))
            .collect();
        files.push(("vae.decoder".into(), &v.decoder));
        if let Some(e) = &v.encoder {
            files.push(("vae.encoder".into(), e));
        }
        files.push(("style.text_encoder".into(), &m.style.text_encoder));
        files.push(("style.tokenizer".into(), &m.style.tokenizer));
        files.push(("style.audio_encoder".into(), &m.style.audio_encoder));
        files.push(("style.negative".into(), &m.style.negative));
        files.push(("lyrics.vocab".into(), &m.lyrics.vocab));
        let mandarin = m.lyrics.mandarin_required();
        files.extend(
            mandarin
                .iter()
                .map(|f| ("lyrics.mandarin".to_string(), f.as_path())),
        );
        for (key, file) in files {
            if !self.file(file).is_file() {
                return Err(BundleError::MissingFile {
                    bundle: self.manifest_path.display().to_string(),
                    key,
                    file: self.file(file).display().to_string(),
                });
            }
        }
        Ok(())
    }

    /// Seconds of audio `frames` latent frames hold.
    pub fn frames_to_seconds(&self, frames: usize) -> f64 {
        frames as f64 * self.manifest.audio.hop as f64 / self.manifest.audio.sample_rate as f64
    }

    /// The longest whole-second length a DiT can generate (285 for 6144 frames, 95 for 2048).
    fn whole_seconds(&self, frames: usize) -> u32 {
        self.frames_to_seconds(frames).floor() as u32
    }

    /// Supported song lengths in whole seconds, as `(min, max)` per DiT, in manifest order.
    pub fn length_ranges(&self) -> Vec<(u32, u32, &str)> {
        let fixed = self.manifest.dit.iter().find(|d| d.fixed_frames);
        self.manifest
            .dit
            .iter()
            .map(|d| {
                let max = self.whole_seconds(d.max_frames);
                if d.fixed_frames {
                    (max, max, d.name.as_str())
                } else {
                    let min = fixed
                        .map(|f| self.whole_seconds(f.max_frames) + 1)
                        .unwrap_or(1);
                    (min, max, d.name.as_str())
                }
            })
            .collect()
    }

    /// Picks the DiT and frame count for a song of `seconds`, following the reference CLI:
    /// exactly 95 s selects the base model at 2048 frames; 96..=285 s the full model at
    /// `min(int(seconds * 44100 / 2048), 6144)` frames. Other lengths are an error listing what is
    /// supported.
    pub fn choose_model(&self, seconds: u32) -> Result<ModelChoice, String> {
        for (i, (min, max, _)) in self.length_ranges().into_iter().enumerate() {
            if seconds >= min && seconds <= max {
                let d = &self.manifest.dit[i];
                let frames = if d.fixed_frames {
                    d.max_frames
                } else {
                    let n = (seconds as u64 * self.manifest.audio.sample_rate as u64)
                        / self.manifest.audio.hop as u64;
                    (n as usize).min(d.max_frames)
                };
                return Ok(ModelChoice {
                    dit: i,
                    frames,
                    max_frames: d.max_frames,
                });
            }
        }
        let supported = self
            .length_ranges()
            .into_iter()
            .map(|(a, b, name)| {
                if a == b {
                    format!("{a} ({name} model)")
                } else {
                    format!("{a} to {b} ({name} model)")
                }
            })
            .collect::<Vec<_>>()
            .join(" or ");
        Err(format!(
            "audio length {seconds} s is not supported by bundle {}: use {supported} seconds",
            self.manifest.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_bundle() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle")
    }

    #[test]
    fn loads_the_test_bundle_and_maps_lengths() {
        let b = Bundle::load(&test_bundle()).unwrap();
        let base = b.choose_model(95).unwrap();
        assert_eq!((base.frames, base.max_frames), (2048, 2048));
        let full = b.choose_model(96).unwrap();
        assert_eq!((full.frames, full.max_frames), (2067, 6144));
        assert_eq!(b.choose_model(285).unwrap().frames, 6136);
        for bad in [0, 94, 286, 1000] {
            let e = b.choose_model(bad).unwrap_err();
            assert!(
                e.contains("95 (base model) or 96 to 285 (full model)"),
                "{e}"
            );
        }
    }

    /// Copies a bundle directory with its subdirectories (the Mandarin data).
    pub(crate) fn copy_dir(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for entry in std::fs::read_dir(src).unwrap() {
            let p = entry.unwrap().path();
            let to = dst.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &to);
            } else {
                std::fs::copy(&p, to).unwrap();
            }
        }
    }

    fn write_variant(edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
        let src = test_bundle();
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&src, tmp.path());
        let text = std::fs::read_to_string(src.join(MANIFEST)).unwrap();
        std::fs::write(tmp.path().join(MANIFEST), edit(text)).unwrap();
        let p = tmp.path().to_path_buf();
        (tmp, p)
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let (_t, dir) = write_variant(|t| t.replace("chunk_frames = 128", "chunk_frame = 128"));
        let e = Bundle::load(&dir).unwrap_err().to_string();
        assert!(e.contains("chunk_frame"), "{e}");
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let (_t, dir) = write_variant(|t| t.replace("vae_decoder.onnx", "nope.onnx"));
        let e = Bundle::load(&dir).unwrap_err().to_string();
        assert!(e.contains("nope.onnx") && e.contains("vae.decoder"), "{e}");
    }

    #[test]
    fn missing_manifest_and_bad_constants_are_errors() {
        let e = Bundle::load(Path::new("/nonexistent/bundle")).unwrap_err();
        assert!(e.to_string().contains("cannot read bundle manifest"), "{e}");
        let (_t, dir) = write_variant(|t| t.replace("hop = 2048", "hop = 1024"));
        let e = Bundle::load(&dir).unwrap_err().to_string();
        assert!(e.contains("hop = 2048"), "{e}");
        let (_t, dir) = write_variant(|t| t.replace("solver = \"euler\"", "solver = \"dopri5\""));
        let e = Bundle::load(&dir).unwrap_err().to_string();
        assert!(e.contains("dopri5"), "{e}");
    }
}
