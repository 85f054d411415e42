//! Grapheme to phoneme: one lyric line to the token ids DiffRhythm's DiT reads.
//!
//! This is `CNENTokenizer.encode` (`infer/infer_utils.py`) over `g2p_generation.chn_eng_g2p` of
//! the reference, ported so that its output is identical, token for token (checked by
//! `tests/g2p_golden.rs` against ids produced by the Python reference): the line is split into
//! zh/en runs ([`segment`]), each run phonemised by the [`G2p`] of its language, the phoneme
//! symbols concatenated, the trailing word separator of a final English run dropped, and the
//! symbols looked up in the [`Vocab`] (unknown ones silently dropped, ids shifted by one).
//!
//! English is [`EnglishG2p`] (espeak-ng en-us), Mandarin is [`MandarinG2p`] (the reference's
//! own front end, over the bundle's Mandarin data files); an encoder built without one of them
//! rejects that language's runs with [`LyricsError::UnsupportedLanguage`]. Text without any letter
//! (empty, digits or punctuation only) is rejected with [`LyricsError::Unpronounceable`], where
//! the reference raises "Unknown language".

pub mod english;
pub mod espeak;
pub mod mandarin;
pub mod numbers;
pub mod phonemizer;
pub mod segment;

pub use english::EnglishG2p;
pub use mandarin::MandarinG2p;
pub use segment::{segments, Lang, Segment};

use super::vocab::Vocab;
use super::LyricsError;

/// A grapheme-to-phoneme converter for one language.
pub trait G2p: Send + Sync {
    /// The reference's code of the language ("en").
    fn language(&self) -> &'static str;
    /// Phoneme symbols of one text segment in this language, as the reference emits them before
    /// the vocabulary lookup.
    fn phonemes(&self, text: &str) -> Result<Vec<String>, LyricsError>;
}

/// The languages a [`LineEncoder`] can be built with.
pub const SUPPORTED_LANGUAGES: &[&str] = &["en", "zh"];

/// Turns one lyric line into token ids (+1 shifted, unknown symbols dropped as the reference
/// does).
pub struct LineEncoder {
    vocab: Vocab,
    g2ps: Vec<Box<dyn G2p>>,
}

impl std::fmt::Debug for LineEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineEncoder")
            .field("vocab_len", &self.vocab.len())
            .field("languages", &self.languages())
            .finish()
    }
}

impl LineEncoder {
    /// An encoder for `languages` without Mandarin data: "en" only (makes sure espeak-ng and
    /// its en-us voice load); "zh" is refused.
    pub fn new(vocab: Vocab, languages: &[String]) -> Result<LineEncoder, LyricsError> {
        Self::with_mandarin(vocab, languages, None)
    }

    /// An encoder for `languages` ("en", "zh"); "zh" needs `mandarin`.
    pub fn with_mandarin(
        vocab: Vocab,
        languages: &[String],
        mandarin: Option<MandarinG2p>,
    ) -> Result<LineEncoder, LyricsError> {
        let supported = if mandarin.is_some() {
            SUPPORTED_LANGUAGES.join(", ")
        } else {
            "en (zh needs the bundle's Mandarin data: [lyrics] mandarin)".to_string()
        };
        let unsupported = |language: &str| LyricsError::UnsupportedLanguage {
            language: language.to_string(),
            text: format!("the languages [{}]", languages.join(", ")),
            supported: supported.clone(),
        };
        if languages.is_empty() {
            return Err(unsupported(""));
        }
        let mut mandarin = mandarin;
        let mut g2ps: Vec<Box<dyn G2p>> = Vec::new();
        for language in languages {
            if g2ps.iter().any(|g| g.language() == language) {
                continue;
            }
            match language.as_str() {
                "en" => {
                    espeak::check()?;
                    g2ps.push(Box::new(EnglishG2p));
                }
                "zh" => match mandarin.take() {
                    Some(m) => g2ps.push(Box::new(m)),
                    None => return Err(unsupported("zh")),
                },
                other => return Err(unsupported(other)),
            }
        }
        Ok(LineEncoder { vocab, g2ps })
    }

    /// The languages this encoder handles.
    pub fn languages(&self) -> Vec<&'static str> {
        self.g2ps.iter().map(|g| g.language()).collect()
    }

    /// The vocabulary the ids come from.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The token ids of one lyric line: `CNENTokenizer.encode(text)` of the reference.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, LyricsError> {
        let segments = segments(text);
        // check every run before phonemising any: one error, naming the first bad run
        let mut plan = Vec::with_capacity(segments.len());
        for segment in &segments {
            let code = segment.lang.code();
            match segment.lang {
                Lang::Empty | Lang::Other => {
                    return Err(LyricsError::Unpronounceable {
                        text: text.to_string(),
                        reason: "no letters to phonemise (only digits, punctuation, spaces or \
                                 letters outside A-Z and CJK); the reference rejects it with \
                                 \"Unknown language\""
                            .to_string(),
                    })
                }
                Lang::Zh | Lang::En => {
                    let g2p = self
                        .g2ps
                        .iter()
                        .find(|g| g.language() == code)
                        .ok_or_else(|| LyricsError::UnsupportedLanguage {
                            language: code.to_string(),
                            text: segment.text.to_string(),
                            supported: self.languages().join(", "),
                        })?;
                    plan.push((segment, g2p));
                }
            }
        }
        let mut tokens = Vec::new();
        let last = plan.len() - 1;
        for (index, (segment, g2p)) in plan.into_iter().enumerate() {
            let symbols = g2p.phonemes(segment.text)?;
            tokens.extend(symbols.iter().filter_map(|s| self.vocab.token(s)));
            // chn_eng_g2p: a final English run whose phonemes end in "_" loses its last token
            let ends_in_separator = symbols.last().is_some_and(|s| s.ends_with('_'));
            if segment.lang == Lang::En && index == last && ends_in_separator {
                tokens.pop();
            }
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocab {
        Vocab::from_json_str(
            r#"{"vocab": {",": 0, ".": 1, "?": 2, "!": 3, "_": 4, "h": 41, "ə": 57, "l": 48,
                "oʊ": 23, "w": 49, "ɜː": 7, "d": 30, "'": 361}}"#,
        )
        .unwrap()
    }

    fn encoder() -> LineEncoder {
        LineEncoder::new(vocab(), &["en".to_string()]).unwrap()
    }

    #[test]
    fn languages() {
        let err = LineEncoder::new(vocab(), &["en".into(), "zh".into()]).unwrap_err();
        assert!(
            matches!(&err, LyricsError::UnsupportedLanguage { language, .. } if language == "zh"),
            "{err}"
        );
        assert!(LineEncoder::new(vocab(), &[]).is_err());
        assert!(LineEncoder::new(vocab(), &["fr".into()]).is_err());
        let e = LineEncoder::new(vocab(), &["en".into(), "en".into()]).unwrap();
        assert_eq!(e.languages(), ["en"]);
    }

    #[test]
    fn encodes_english() {
        // h ə l oʊ _ w ɜː l d (+ the final "_" dropped), ids + 1
        assert_eq!(
            encoder().encode("Hello world").unwrap(),
            [42, 58, 49, 24, 5, 50, 8, 49, 31]
        );
        assert_eq!(
            encoder().encode("hello, world!").unwrap(),
            [42, 58, 49, 24, 1, 50, 8, 49, 31, 4]
        );
    }

    #[test]
    fn rejects_chinese() {
        for text in ["你好", "hello 世界", "你好 hello"] {
            let err = encoder().encode(text).unwrap_err();
            assert!(
                matches!(&err, LyricsError::UnsupportedLanguage { language, .. } if language == "zh"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn rejects_text_without_letters() {
        for text in ["", "99", "...", "?!", "1,000,000", "é", "안녕", "   "] {
            let err = encoder().encode(text).unwrap_err();
            assert!(
                matches!(err, LyricsError::Unpronounceable { .. }),
                "{text:?}: {err}"
            );
            assert!(err.to_string().contains("no letters"), "{err}");
        }
    }

    #[test]
    fn rejects_unspellable_numbers() {
        let err = encoder()
            .encode("1000000000000000000000000000000000000000 grains")
            .unwrap_err();
        assert!(matches!(err, LyricsError::Unpronounceable { .. }), "{err}");
    }
}
