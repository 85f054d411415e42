//! The Mandarin front end's data files, read from a directory laid out as the reference's
//! `g2p/sources/` (see `docs/mandarin.md`): the word → pinyin lexicon, the pinyin → bopomofo table,
//! and, for the polyphone model, its character list, class table and BERT vocabulary.
//!
//! The lexicon has about 665 000 entries (15 MB); it is kept as one string with a sorted index
//! of offsets (12 bytes an entry) rather than a map of owned strings, and loaded once per
//! directory and process ([`MandarinData::load`] caches it), because admission, the node and the
//! CLI each build a line encoder from the same bundle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::lyrics::LyricsError;

/// File names inside a Mandarin data directory (those of the reference's `g2p/sources/`).
pub const LEXICON: &str = "chinese_lexicon.txt";
pub const PINYIN_TO_BOPOMOFO: &str = "pinyin_2_bpmf.txt";
pub const POLYCHAR: &str = "polychar.txt";
pub const POLYDICT: &str = "polydict.json";
pub const BERT_VOCAB: &str = "vocab.txt";
pub const POLY_MODEL: &str = "poly_bert_model.onnx";

/// The word → pinyin lexicon (`word\tpin1 yin1` lines; a later duplicate wins, as in the
/// reference's dict).
#[derive(Debug)]
pub struct Lexicon {
    text: String,
    /// (key start, key length, value start, value length), sorted by key.
    index: Vec<(u32, u16, u32, u16)>,
}

impl Lexicon {
    /// Parses lexicon text; `source` names it in errors.
    pub fn parse(text: String, source: &str) -> Result<Lexicon, LyricsError> {
        let mut index = Vec::new();
        let mut offset = 0usize;
        for (n, raw) in text.split_inclusive('\n').enumerate() {
            let start = offset;
            offset += raw.len();
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let lead = raw.len() - raw.trim_start().len();
            let (word, pinyin) = line.split_once('\t').ok_or_else(|| LyricsError::Vocab {
                path: source.to_string(),
                reason: format!("line {}: no tab between word and pinyin", n + 1),
            })?;
            if pinyin.contains('\t') || word.len() > u16::MAX as usize {
                return Err(LyricsError::Vocab {
                    path: source.to_string(),
                    reason: format!("line {}: expected `word<TAB>pinyin`", n + 1),
                });
            }
            let key = start + lead;
            let value = key + word.len() + 1;
            index.push((
                key as u32,
                word.len() as u16,
                value as u32,
                pinyin.len() as u16,
            ));
        }
        if text.len() > u32::MAX as usize {
            return Err(LyricsError::Vocab {
                path: source.to_string(),
                reason: "lexicon larger than 4 GB".into(),
            });
        }
        let slice = |s: u32, l: u16| &text[s as usize..s as usize + l as usize];
        // stable sort, then keep the last of equal keys: the reference's dict overwrites
        index.sort_by(|a, b| slice(a.0, a.1).cmp(slice(b.0, b.1)));
        let mut dedup: Vec<(u32, u16, u32, u16)> = Vec::with_capacity(index.len());
        for e in index {
            match dedup.last_mut() {
                Some(last) if slice(last.0, last.1) == slice(e.0, e.1) => *last = e,
                _ => dedup.push(e),
            }
        }
        Ok(Lexicon { text, index: dedup })
    }

    /// The pinyin of `word` (`"ni3 hao3"`), if the lexicon has it.
    pub fn get(&self, word: &str) -> Option<&str> {
        let slice = |s: u32, l: u16| &self.text[s as usize..s as usize + l as usize];
        self.index
            .binary_search_by(|e| slice(e.0, e.1).cmp(word))
            .ok()
            .map(|i| slice(self.index[i].2, self.index[i].3))
    }

    /// Number of distinct words.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// What the polyphone model needs besides the graph: which characters it decides, the class
/// table (`polydict.json`: class number → `字{pinyin5}`) and the BERT vocabulary.
#[derive(Debug)]
pub struct PolyData {
    pub chars: std::collections::HashSet<char>,
    /// Class index (0-based, the model's argmax) → pinyin with tone digit (`"hang2"`).
    pub classes: Vec<String>,
    pub bert_vocab: HashMap<String, i32>,
    pub unk_id: i32,
    pub cls_id: i32,
    /// The ONNX graph, when the directory has it.
    pub model: Option<PathBuf>,
}

/// Everything the Mandarin G2P reads from disk.
#[derive(Debug)]
pub struct MandarinData {
    pub dir: PathBuf,
    pub lexicon: Lexicon,
    pub pinyin_to_bopomofo: HashMap<String, String>,
    /// Absent when the directory has no `polychar.txt`: every character takes its lexicon
    /// reading (a test bundle's small lexicon).
    pub poly: Option<PolyData>,
}

fn read(dir: &Path, name: &str) -> Result<String, LyricsError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|e| LyricsError::Vocab {
        path: path.display().to_string(),
        reason: format!("cannot read the Mandarin data file: {e}"),
    })
}

fn bad(dir: &Path, name: &str, reason: impl Into<String>) -> LyricsError {
    LyricsError::Vocab {
        path: dir.join(name).display().to_string(),
        reason: reason.into(),
    }
}

impl MandarinData {
    /// Loads (once per directory and process) the data files of `dir`.
    pub fn load(dir: &Path) -> Result<Arc<MandarinData>, LyricsError> {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<MandarinData>>>> = OnceLock::new();
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(data) = cache.get(&key) {
            return Ok(data.clone());
        }
        let data = Arc::new(Self::read(dir)?);
        cache.insert(key, data.clone());
        Ok(data)
    }

    fn read(dir: &Path) -> Result<MandarinData, LyricsError> {
        let lexicon = Lexicon::parse(
            read(dir, LEXICON)?,
            &dir.join(LEXICON).display().to_string(),
        )?;
        let mut pinyin_to_bopomofo = HashMap::new();
        for (n, line) in read(dir, PINYIN_TO_BOPOMOFO)?.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (p, b) = line
                .split_once('\t')
                .ok_or_else(|| bad(dir, PINYIN_TO_BOPOMOFO, format!("line {}: no tab", n + 1)))?;
            pinyin_to_bopomofo.insert(p.to_string(), b.to_string());
        }
        let poly = if dir.join(POLYCHAR).is_file() {
            Some(Self::read_poly(dir)?)
        } else {
            None
        };
        Ok(MandarinData {
            dir: dir.to_path_buf(),
            lexicon,
            pinyin_to_bopomofo,
            poly,
        })
    }

    fn read_poly(dir: &Path) -> Result<PolyData, LyricsError> {
        let chars = read(dir, POLYCHAR)?
            .lines()
            .filter_map(|l| {
                let mut it = l.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => Some(c),
                    _ => None,
                }
            })
            .collect();
        let json: serde_json::Value = serde_json::from_str(&read(dir, POLYDICT)?)
            .map_err(|e| bad(dir, POLYDICT, format!("not JSON: {e}")))?;
        let map = json
            .as_object()
            .ok_or_else(|| bad(dir, POLYDICT, "expected an object"))?;
        let mut classes = vec![String::new(); map.len()];
        for (k, v) in map {
            let n: usize = k
                .parse()
                .ok()
                .filter(|n| (1..=map.len()).contains(n))
                .ok_or_else(|| bad(dir, POLYDICT, format!("key {k:?} is not 1..={}", map.len())))?;
            let v = v.as_str().unwrap_or_default();
            // `字{pin5}` → `pin5`, as the reference's `poly_pinyin[2:-1]`
            let chars: Vec<char> = v.chars().collect();
            if chars.len() < 4 {
                return Err(bad(
                    dir,
                    POLYDICT,
                    format!("class {v:?} is not 字{{pinyin}}"),
                ));
            }
            classes[n - 1] = chars[2..chars.len() - 1].iter().collect();
        }
        let mut bert_vocab = HashMap::new();
        // BertTokenizer's load_vocab: one token per '\n'-terminated line, the line number is the id
        for (i, token) in read(dir, BERT_VOCAB)?.split_inclusive('\n').enumerate() {
            bert_vocab.insert(token.trim_end_matches('\n').to_string(), i as i32);
        }
        let id = |t: &str| {
            bert_vocab
                .get(t)
                .copied()
                .ok_or_else(|| bad(dir, BERT_VOCAB, format!("no {t} token")))
        };
        let (unk_id, cls_id) = (id("[UNK]")?, id("[CLS]")?);
        let model = Some(dir.join(POLY_MODEL)).filter(|p| p.is_file());
        Ok(PolyData {
            chars,
            classes,
            bert_vocab,
            unk_id,
            cls_id,
            model,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_lookup_keeps_the_last_duplicate() {
        let lex = Lexicon::parse(
            "你好\tni3 hao3\n好\thao3\n 中\tzhong1\n好\thao4\n".into(),
            "t",
        )
        .unwrap();
        assert_eq!(lex.len(), 3);
        assert_eq!(lex.get("你好"), Some("ni3 hao3"));
        assert_eq!(lex.get("好"), Some("hao4"));
        assert_eq!(lex.get("中"), Some("zhong1"));
        assert_eq!(lex.get("你"), None);
        assert!(Lexicon::parse("你好 ni3\n".into(), "t").is_err());
    }
}
