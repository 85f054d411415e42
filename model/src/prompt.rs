//! Style prompt checks, shared by admission and the node so both refuse the same prompts: not
//! empty, at most [`MAX_PROMPT_CHARS`] characters ([`check_prompt_text`]), and at most
//! [`MAX_PROMPT_TOKENS`] tokens of the bundle's text tokenizer ([`PromptTokenizer::check`]).
//!
//! The prompt goes through the bundle's HF `tokenizer.json` as is (special tokens added, no
//! truncation, like the reference's `mulan(texts=prompt)`); [`PromptTokenizer::token_ids`] gives
//! the ids the node feeds to the text encoder.

use std::path::Path;

use crate::bundle::Bundle;
use crate::ModelError;

/// Longest prompt accepted, in characters.
pub const MAX_PROMPT_CHARS: usize = 1000;
/// Longest prompt accepted, in tokenizer tokens (XLM-R's position limit is 514).
pub const MAX_PROMPT_TOKENS: usize = 512;

/// Checks a prompt's text without tokenizing it: not blank, not too many characters.
pub fn check_prompt_text(prompt: &str) -> Result<(), ModelError> {
    if prompt.trim().is_empty() {
        return Err(ModelError::InvalidRequest("style prompt is empty".into()));
    }
    let chars = prompt.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(ModelError::InvalidRequest(format!(
            "style prompt has {chars} characters, the limit is {MAX_PROMPT_CHARS}"
        )));
    }
    Ok(())
}

/// A bundle's style text tokenizer.
pub struct PromptTokenizer {
    tokenizer: tokenizers::Tokenizer,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer").finish_non_exhaustive()
    }
}

impl PromptTokenizer {
    /// Loads a HF `tokenizer.json`.
    pub fn load(path: &Path) -> Result<PromptTokenizer, ModelError> {
        let tokenizer =
            tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
                path: path.display().to_string(),
                message: format!("cannot load tokenizer: {e}"),
            })?;
        Ok(PromptTokenizer { tokenizer })
    }

    /// The tokenizer named by a bundle's `[style] tokenizer`.
    pub fn for_bundle(bundle: &Bundle) -> Result<PromptTokenizer, ModelError> {
        PromptTokenizer::load(&bundle.file(&bundle.manifest.style.tokenizer))
    }

    /// The token ids of a valid prompt (special tokens added, no truncation); a prompt that is
    /// blank, too long, has no tokens or more than [`MAX_PROMPT_TOKENS`] is an error.
    pub fn token_ids(&self, prompt: &str) -> Result<Vec<u32>, ModelError> {
        check_prompt_text(prompt)?;
        let enc = self.tokenizer.encode(prompt, true).map_err(|e| {
            ModelError::InvalidRequest(format!("style prompt cannot be tokenized: {e}"))
        })?;
        let ids = enc.get_ids().to_vec();
        if ids.is_empty() {
            return Err(ModelError::InvalidRequest(
                "style prompt has no tokens".into(),
            ));
        }
        if ids.len() > MAX_PROMPT_TOKENS {
            return Err(ModelError::InvalidRequest(format!(
                "style prompt has {} tokens, the limit is {MAX_PROMPT_TOKENS}",
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// Checks a prompt as the node will (text, then token count).
    pub fn check(&self, prompt: &str) -> Result<(), ModelError> {
        self.token_ids(prompt).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_text_and_token_limits() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle");
        let bundle = Bundle::load(&dir).unwrap();
        let t = PromptTokenizer::for_bundle(&bundle).unwrap();
        t.check("upbeat pop with piano").unwrap();
        let e = t.check("  ").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let long = "a".repeat(MAX_PROMPT_CHARS + 1);
        let e = t.check(&long).unwrap_err().to_string();
        assert!(e.contains("characters"), "{e}");
        // The test tokenizer splits words from punctuation: 600 characters, 600 tokens.
        let many = "a!".repeat(300);
        let e = t.check(&many).unwrap_err().to_string();
        assert!(e.contains("600 tokens"), "{e}");
    }
}
