//! The Mandarin G2P: a run of Chinese text to DiffRhythm's IPA symbols, ported from the
//! reference's `g2p/g2p/mandarin.py::chinese_to_ipa` so that the tokens are identical (checked
//! by `tests/mandarin_golden.rs` against ids produced by the reference code):
//!
//! 1. numbers to Chinese numerals ([`numbers`], cn2an's `an2cn`);
//! 2. punctuation normalised, everything but ideographs and `_,.?!;:'…` removed ([`words`]);
//! 3. jieba word segmentation, then the 一, 不 and 儿 merges ([`words`]);
//! 4. per word, pinyin from the lexicon; a single polyphonic character is decided by the
//!    polyphone BERT ([`PolyphoneModel`]) over the whole normalised text;
//! 5. tone sandhi ([`sandhi`]);
//! 6. pinyin → bopomofo → IPA with tone arrows ([`ipa`]).
//!
//! The data files come from the bundle ([`data`]). The BERT is an ONNX graph, and this crate
//! links no ONNX Runtime (admission uses it): the node and the CLI plug a runtime in through
//! [`PolyphoneModel`]. Without one — at admission, or with a bundle that has no polyphone
//! data — a polyphonic character takes its lexicon reading, which can change which tone or
//! final a token carries but not whether a line can be sung (a documented difference, see
//! `docs/mandarin.md`). Results are cached per run of text ([`MandarinG2p::phonemes`]).

pub mod data;
pub mod ipa;
pub mod numbers;
pub mod sandhi;
pub mod words;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use data::MandarinData;

use super::G2p;
use crate::lyrics::LyricsError;

/// The polyphone classifier: BERT input ids (`[CLS]` then one id per character) to the arg-max
/// class of each character position (0-based, over all classes of `polydict.json`).
pub trait PolyphoneModel: Send + Sync {
    fn classify(&self, input_ids: &[i32]) -> Result<Vec<usize>, String>;
}

/// How many distinct runs of text the per-line cache keeps before it starts over.
const CACHE_LIMIT: usize = 4096;

/// The Mandarin [`G2p`] (`zh`).
pub struct MandarinG2p {
    data: Arc<MandarinData>,
    model: Option<Arc<dyn PolyphoneModel>>,
    cache: Mutex<HashMap<String, Vec<String>>>,
}

impl std::fmt::Debug for MandarinG2p {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MandarinG2p")
            .field("data", &self.data.dir)
            .field("polyphone_model", &self.model.is_some())
            .finish()
    }
}

fn tone_mark(digit: char) -> Option<&'static str> {
    match digit {
        '0' | '5' => Some("˙"),
        '1' => Some(""),
        '2' => Some("ˊ"),
        '3' => Some("ˇ"),
        '4' => Some("ˋ"),
        _ => None,
    }
}

impl MandarinG2p {
    /// A G2P over `data`, deciding polyphones with `model` when given.
    pub fn new(data: Arc<MandarinData>, model: Option<Arc<dyn PolyphoneModel>>) -> MandarinG2p {
        words::warm_up();
        MandarinG2p {
            data,
            model,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether polyphones are decided by the model (else by the lexicon).
    pub fn has_polyphone_model(&self) -> bool {
        self.model.is_some()
    }

    /// `pinyin_2_bopomofo_dict[py[:-1]] + tone_dict[py[-1]]`, or `None` where the reference's
    /// lookup fails.
    fn bopomofo(&self, pinyin: &str) -> Option<String> {
        let tone = pinyin.chars().last()?;
        let base = &pinyin[..pinyin.len() - tone.len_utf8()];
        Some(self.data.pinyin_to_bopomofo.get(base)?.clone() + tone_mark(tone)?)
    }

    /// A character's lexicon reading as bopomofo, or the character itself (dropped later).
    fn char_reading(&self, c: char) -> Result<String, LyricsError> {
        let mut buf = [0u8; 4];
        match self.data.lexicon.get(c.encode_utf8(&mut buf)) {
            Some(py) => self
                .bopomofo(py)
                .ok_or_else(|| LyricsError::Unpronounceable {
                    text: c.to_string(),
                    reason: format!("the lexicon's pinyin {py:?} has no bopomofo"),
                }),
            None => Ok(c.to_string()),
        }
    }

    /// The polyphone model's class of every character of `text` (run once per text).
    fn classify(
        &self,
        model: &dyn PolyphoneModel,
        text: &[char],
    ) -> Result<Vec<usize>, LyricsError> {
        let poly = self
            .data
            .poly
            .as_ref()
            .expect("a model implies polyphone data");
        let mut ids = Vec::with_capacity(text.len() + 1);
        ids.push(poly.cls_id);
        for c in text {
            ids.push(*poly.bert_vocab.get(&c.to_string()).unwrap_or(&poly.unk_id));
        }
        let classes = model.classify(&ids).map_err(LyricsError::Polyphone)?;
        if classes.len() != text.len() {
            return Err(LyricsError::Polyphone(format!(
                "it gave {} classes for {} characters",
                classes.len(),
                text.len()
            )));
        }
        Ok(classes)
    }

    /// The reference's `chinese_to_bopomofo`: the normalised text to `|`-separated bopomofo.
    fn to_bopomofo(&self, text: &str) -> Result<String, LyricsError> {
        let chars: Vec<char> = text.chars().collect();
        let segmented = words::merge_er(&words::merge_bu(&words::merge_yi(&words::cut(text))));
        let poly = self.data.poly.as_ref();
        let model = self.model.as_deref().filter(|_| poly.is_some());
        let mut classes: Option<Vec<usize>> = None;
        let mut out = String::new();
        let mut char_index = 0usize;
        for word in &segmented {
            let wchars: Vec<char> = word.chars().collect();
            let is_poly = |c: char| poly.is_some_and(|p| p.chars.contains(&c));
            let mut b: Vec<String> = Vec::new();
            let whole = (wchars.len() != 1 || !is_poly(wchars[0]))
                .then(|| self.data.lexicon.get(word))
                .flatten();
            if let Some(pinyin) = whole {
                for py in pinyin.split(' ') {
                    match self.bopomofo(py) {
                        Some(s) => b.push(s),
                        // the reference falls back to pypinyin for the whole word; the two
                        // lexicon words that reach this are not in jieba's dictionary
                        None => {
                            for c in &wchars {
                                b.push(self.char_reading(*c)?);
                            }
                        }
                    }
                }
            } else {
                for (i, &c) in wchars.iter().enumerate() {
                    if let (true, Some(model)) = (is_poly(c), model) {
                        if classes.is_none() {
                            classes = Some(self.classify(model, &chars)?);
                        }
                        let at = char_index + i;
                        let class = classes.as_ref().and_then(|v| v.get(at)).copied();
                        let p = poly.expect("checked");
                        let py = class.and_then(|k| p.classes.get(k)).ok_or_else(|| {
                            LyricsError::Unpronounceable {
                                text: text.to_string(),
                                reason: format!(
                                    "character {at} is past the text after the 不 merge \
                                     (the reference fails here too)"
                                ),
                            }
                        })?;
                        b.push(self.bopomofo(py).ok_or_else(|| {
                            LyricsError::Polyphone(format!("class {py:?} has no bopomofo"))
                        })?);
                    } else {
                        b.push(self.char_reading(c)?);
                    }
                }
            }
            char_index += wchars.len();
            let b = sandhi::apply(word, b).map_err(|e| LyricsError::Unpronounceable {
                text: text.to_string(),
                reason: format!("{e} (the reference fails here too)"),
            })?;
            if !words::has_ideograph(word) {
                out.push('|');
                out.push_str(word);
                continue;
            }
            if !out.is_empty() {
                out.push('|');
            }
            let marked: Vec<String> = b
                .into_iter()
                .map(|s| match s.chars().last() {
                    Some(c) if ('\u{3105}'..='\u{3129}').contains(&c) => s + "ˉ",
                    _ => s,
                })
                .collect();
            out.push_str(&marked.join("|"));
        }
        Ok(out)
    }

    /// `_chinese_to_ipa` without the cache.
    fn compute(&self, text: &str) -> Result<Vec<String>, LyricsError> {
        let text = numbers::transform(text.trim());
        let text = words::normalize(&text);
        Ok(ipa::to_ipa(&self.to_bopomofo(&text)?))
    }
}

impl G2p for MandarinG2p {
    fn language(&self) -> &'static str {
        "zh"
    }

    fn phonemes(&self, text: &str) -> Result<Vec<String>, LyricsError> {
        let lock = |m: &Mutex<HashMap<String, Vec<String>>>| {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(text)
                .cloned()
        };
        if let Some(hit) = lock(&self.cache) {
            return Ok(hit);
        }
        let symbols = self.compute(text)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(text.to_string(), symbols.clone());
        Ok(symbols)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::data::{Lexicon, MandarinData, PolyData};
    use super::{MandarinG2p, PolyphoneModel, CACHE_LIMIT};
    use crate::bundle::Bundle;
    use crate::lyrics::g2p::G2p;
    use crate::track;

    fn encoder() -> crate::lyrics::g2p::LineEncoder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle");
        track::line_encoder(&Bundle::load(&dir).unwrap(), None).unwrap()
    }

    #[test]
    fn the_test_bundle_sings_chinese_with_its_own_lexicon() {
        let e = encoder();
        assert_eq!(e.languages(), ["en", "zh"]);
        // 你好 → n i↑ x ɑʊ↓↑ (3-3 sandhi); the test vocabulary has n (24) and x (39), ids + 1
        assert_eq!(e.encode("你好").unwrap(), [25, 40]);
        // neutral tones keep bare finals: 的 → t⁼ ə, 了 → l ə
        assert_eq!(e.encode("的了").unwrap(), [57, 23, 57]);
        // numbers become numerals: 3 → 三 san1 → s an→ (s is 30)
        assert_eq!(
            e.encode("3").ok(),
            None,
            "digits alone are not a Chinese run"
        );
        assert_eq!(e.encode("你3").unwrap(), [25, 31]);
        // mixed: the Chinese run, then the English run (no separator token between them)
        let mixed = e.encode("你好 hello").unwrap();
        assert_eq!(&mixed[..2], [25, 40]);
        assert_eq!(mixed[2..], e.encode("hello").unwrap()[..]);
        // punctuation: ，→ "," (id 0 + 1)
        assert_eq!(e.encode("你，好").unwrap(), [25, 1, 40]);
    }

    /// A polyphone model that counts its calls and reads every character as class 1.
    #[derive(Default)]
    struct CountingModel {
        calls: AtomicUsize,
    }

    impl PolyphoneModel for CountingModel {
        fn classify(&self, input_ids: &[i32]) -> Result<Vec<usize>, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(vec![1; input_ids.len() - 1])
        }
    }

    /// A G2P whose only polyphone is 行 (class 0 xing2, class 1 hang2), with `model`.
    fn g2p_with(model: Arc<CountingModel>) -> MandarinG2p {
        let table = [("xing", "ㄒㄧㄥ"), ("hang", "ㄏㄤ"), ("ni", "ㄋㄧ")];
        let data = MandarinData {
            dir: "in-memory".into(),
            lexicon: Lexicon::parse("你\tni3\n行\txing2\n".into(), "in-memory").unwrap(),
            pinyin_to_bopomofo: table
                .iter()
                .map(|(p, b)| (p.to_string(), b.to_string()))
                .collect(),
            poly: Some(PolyData {
                chars: ['行'].into_iter().collect(),
                classes: vec!["xing2".into(), "hang2".into()],
                bert_vocab: [("[UNK]", 100), ("[CLS]", 101), ("行", 5), ("你", 6)]
                    .iter()
                    .map(|(t, id)| (t.to_string(), *id))
                    .collect(),
                unk_id: 100,
                cls_id: 101,
                model: None,
            }),
        };
        MandarinG2p::new(Arc::new(data), Some(model as Arc<dyn PolyphoneModel>))
    }

    #[test]
    fn a_repeated_line_comes_from_the_cache_without_running_the_model() {
        let model = Arc::new(CountingModel::default());
        let g2p = g2p_with(model.clone());
        let calls = || model.calls.load(Ordering::SeqCst);
        let first = g2p.phonemes("你行").unwrap();
        assert_eq!(calls(), 1, "the polyphone 行 runs the model once");
        // class 1 is hang2: the model's reading, not the lexicon's xing2
        let lexicon_only = MandarinG2p::new(g2p.data.clone(), None);
        assert_ne!(first, lexicon_only.phonemes("你行").unwrap());
        for _ in 0..3 {
            assert_eq!(g2p.phonemes("你行").unwrap(), first);
        }
        assert_eq!(calls(), 1, "a repeated line must not run the model again");
        g2p.phonemes("行你").unwrap();
        assert_eq!(calls(), 2, "another line does");
    }

    #[test]
    fn the_line_cache_is_bounded() {
        let model = Arc::new(CountingModel::default());
        let g2p = g2p_with(model.clone());
        let calls = || model.calls.load(Ordering::SeqCst);
        let cached = || g2p.cache.lock().unwrap().len();
        g2p.phonemes("行0").unwrap();
        // CACHE_LIMIT more distinct lines (digits become numerals; the line is the cache key)
        for i in 1..=CACHE_LIMIT {
            g2p.phonemes(&format!("行{i}")).unwrap();
            assert!(cached() <= CACHE_LIMIT, "{} lines cached", cached());
        }
        assert_eq!(
            calls(),
            CACHE_LIMIT + 1,
            "every distinct line ran the model"
        );
        // the first line was dropped to make room, so it runs the model again
        g2p.phonemes("行0").unwrap();
        assert_eq!(calls(), CACHE_LIMIT + 2);
        assert!(cached() <= CACHE_LIMIT);
        // while the newest lines are still there
        let newest = format!("行{CACHE_LIMIT}");
        g2p.phonemes(&newest).unwrap();
        assert_eq!(calls(), CACHE_LIMIT + 2, "{newest} still cached");
    }

    #[test]
    fn chinese_without_sung_symbols_is_not_an_error() {
        // 我爱 → uo↓↑ aɪ↓: nothing in the test vocabulary, an empty but valid encoding
        assert_eq!(encoder().encode("我爱").unwrap(), Vec::<i64>::new());
    }
}
