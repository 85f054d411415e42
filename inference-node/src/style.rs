//! Style conditioning: a 512-d, L2-normalised embedding (MuQ-MuLan in the real bundle) from a
//! text prompt or from a reference recording, plus the fixed negative style of the
//! unconditional branch.
//!
//! Text: the prompt goes through the bundle's HF `tokenizer.json` as is (special tokens added,
//! no truncation, like the reference's `mulan(texts=prompt)`; see
//! `refrain_model::prompt::PromptTokenizer`, which admission uses too) and the text encoder graph.
//! Audio: decoded, mixed to mono, resampled to 24 kHz and cropped to the reference's 10 s
//! window (see [`crate::audio::style_clip`]), then the audio encoder graph. Text embeddings
//! depend only on the prompt, so a small cache keeps recent ones.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use ort::session::SessionInputValue;

use crate::audio::{self, Decoded};
use crate::error::InferenceError;
use crate::sampler::STYLE_DIM;
use crate::tensor::{float_tensor, int64_tensor, Graph, Precision};

use refrain_model::prompt::{check_prompt_text, PromptTokenizer};
pub use refrain_model::prompt::{MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS};
const CACHE_SIZE: usize = 64;

/// Where a request's style comes from.
#[derive(Debug, Clone)]
pub enum StyleSource {
    /// A text prompt such as "upbeat pop with piano".
    Prompt(String),
    /// A decoded reference recording (at least `audio_seconds` long).
    Audio(Decoded),
}

/// The style encoders of a bundle.
pub struct StyleEncoder {
    text: Graph,
    tokenizer: PromptTokenizer,
    audio: Graph,
    audio_precision: Precision,
    sample_rate: u32,
    seconds: u32,
    negative: Vec<f32>,
    cache: HashMap<String, Vec<f32>>,
    order: VecDeque<String>,
}

impl std::fmt::Debug for StyleEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StyleEncoder")
            .field("text", &self.text.name)
            .field("audio", &self.audio.name)
            .finish_non_exhaustive()
    }
}

/// Reads the negative style: raw little-endian f32 (`.f32`/`.bin`) or a NumPy `.npy` of
/// float32 with 512 values (shape `[512]` or `[1, 512]`, as DiffRhythm's `vocal.npy`).
pub fn load_negative(path: &Path) -> Result<Vec<f32>, InferenceError> {
    let bytes = std::fs::read(path).map_err(|source| InferenceError::Io {
        context: format!("reading negative style {}", path.display()),
        source,
    })?;
    let bad = |m: String| InferenceError::Contract {
        graph: path.display().to_string(),
        message: m,
    };
    let data = if bytes.starts_with(b"\x93NUMPY") {
        let (major, header_start) = (bytes.get(6).copied().unwrap_or(0), 8);
        let (len, start) = match major {
            1 => (
                u16::from_le_bytes([bytes[header_start], bytes[header_start + 1]]) as usize,
                header_start + 2,
            ),
            2 | 3 => (
                u32::from_le_bytes(
                    bytes
                        .get(header_start..header_start + 4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| bad("truncated .npy header".into()))?,
                ) as usize,
                header_start + 4,
            ),
            v => return Err(bad(format!("unsupported .npy version {v}"))),
        };
        let header = bytes
            .get(start..start + len)
            .map(String::from_utf8_lossy)
            .ok_or_else(|| bad("truncated .npy header".into()))?;
        if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
            return Err(bad(format!(
                "expected little-endian float32 C-order data, header {header}"
            )));
        }
        &bytes[start + len..]
    } else {
        &bytes[..]
    };
    if data.len() != STYLE_DIM * 4 {
        return Err(bad(format!(
            "expected {STYLE_DIM} float32 values ({} bytes), found {} bytes",
            STYLE_DIM * 4,
            data.len()
        )));
    }
    let v: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    check_embedding(&path.display().to_string(), &v)?;
    Ok(v)
}

fn check_embedding(what: &str, v: &[f32]) -> Result<(), InferenceError> {
    if v.len() != STYLE_DIM {
        return Err(InferenceError::Contract {
            graph: what.to_string(),
            message: format!("embedding has {} values, expected {STYLE_DIM}", v.len()),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(InferenceError::NonFinite(what.to_string()));
    }
    Ok(())
}

impl StyleEncoder {
    /// Wraps the loaded graphs, checking their signatures.
    pub fn new(
        text: Graph,
        tokenizer_path: &Path,
        audio: Graph,
        sample_rate: u32,
        seconds: u32,
        negative: Vec<f32>,
    ) -> Result<StyleEncoder, InferenceError> {
        text.int64_input("input_ids", 2)?;
        text.int64_input("attention_mask", 2)?;
        text.float_output("embedding", 2)?;
        let audio_precision = audio.float_input("wav", 2)?;
        audio.float_output("embedding", 2)?;
        let tokenizer = PromptTokenizer::load(tokenizer_path)?;
        check_embedding("negative style", &negative)?;
        Ok(StyleEncoder {
            text,
            tokenizer,
            audio,
            audio_precision,
            sample_rate,
            seconds,
            negative,
            cache: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    /// Time spent inside ONNX Runtime by the style encoders.
    pub fn busy(&self) -> std::time::Duration {
        self.text.busy + self.audio.busy
    }

    /// The negative style of the unconditional branch.
    pub fn negative(&self) -> &[f32] {
        &self.negative
    }

    /// Checks a prompt's text without running anything (the token limit is checked when it
    /// is tokenized).
    pub fn validate_prompt(prompt: &str) -> Result<(), InferenceError> {
        Ok(check_prompt_text(prompt)?)
    }

    /// The style embedding of a request.
    pub fn embed(&mut self, source: &StyleSource) -> Result<Vec<f32>, InferenceError> {
        match source {
            StyleSource::Prompt(p) => self.from_prompt(p),
            StyleSource::Audio(d) => self.from_audio(d),
        }
    }

    /// Embeds a text prompt.
    pub fn from_prompt(&mut self, prompt: &str) -> Result<Vec<f32>, InferenceError> {
        Self::validate_prompt(prompt)?;
        if let Some(v) = self.cache.get(prompt) {
            return Ok(v.clone());
        }
        let ids: Vec<i64> = self
            .tokenizer
            .token_ids(prompt)?
            .into_iter()
            .map(i64::from)
            .collect();
        let l = ids.len();
        let name = self.text.name.clone();
        let inputs = vec![
            (
                "input_ids",
                SessionInputValue::from(int64_tensor(&name, &[1, l], ids)?),
            ),
            (
                "attention_mask",
                SessionInputValue::from(int64_tensor(&name, &[1, l], vec![1; l])?),
            ),
        ];
        let (_, v) = self.text.run_f32(inputs, "embedding")?;
        check_embedding(&name, &v)?;
        if self.order.len() >= CACHE_SIZE {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
        self.order.push_back(prompt.to_string());
        self.cache.insert(prompt.to_string(), v.clone());
        Ok(v)
    }

    /// Embeds a reference recording (the reference's 10 s crop at 24 kHz mono).
    pub fn from_audio(&mut self, decoded: &Decoded) -> Result<Vec<f32>, InferenceError> {
        let clip = audio::style_clip(decoded, self.sample_rate, self.seconds)?;
        let name = self.audio.name.clone();
        let wav = float_tensor(&name, self.audio_precision, &[1, clip.len()], &clip)?;
        let (_, v) = self
            .audio
            .run_f32(vec![("wav", SessionInputValue::from(wav))], "embedding")?;
        check_embedding(&name, &v)?;
        Ok(v)
    }
}
