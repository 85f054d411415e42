//! The phoneme vocabulary: phoneme symbol → token id, as the DiT's text embedding expects it.
//!
//! The reference reads `g2p/g2p/vocab.json` (`{"vocab": {symbol: id}}`, 363 symbols, ids
//! 0..=362) and `CNENTokenizer.encode` adds 1 to every id, so that 0 stays free for the pad
//! token of the frame-aligned lyric track. [`Vocab::token`] returns that shifted id.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use super::LyricsError;

/// A phoneme vocabulary loaded from a `{"vocab": {symbol: id}}` JSON file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    ids: HashMap<String, i64>,
}

impl Vocab {
    /// Loads the vocabulary file at `path`.
    pub fn load(path: &Path) -> Result<Vocab, LyricsError> {
        let text = std::fs::read_to_string(path).map_err(|e| LyricsError::Vocab {
            path: path.display().to_string(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses a vocabulary from JSON text (errors name the source as `<string>`).
    pub fn from_json_str(json: &str) -> Result<Vocab, LyricsError> {
        Self::parse(json, "<string>")
    }

    fn parse(json: &str, source: &str) -> Result<Vocab, LyricsError> {
        let bad = |reason: String| LyricsError::Vocab {
            path: source.to_string(),
            reason,
        };
        let root: Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let map = root
            .get("vocab")
            .ok_or_else(|| bad("no \"vocab\" key at the top level".to_string()))?
            .as_object()
            .ok_or_else(|| bad("\"vocab\" is not an object of symbol → id".to_string()))?;
        if map.is_empty() {
            return Err(bad("\"vocab\" is empty".to_string()));
        }
        let mut ids = HashMap::with_capacity(map.len());
        let mut seen: HashMap<i64, &str> = HashMap::with_capacity(map.len());
        for (symbol, id) in map {
            let id = id
                .as_i64()
                .filter(|id| (0..i64::MAX).contains(id))
                .ok_or_else(|| {
                    bad(format!(
                        "the id of {symbol:?} is {id}, not a non-negative integer"
                    ))
                })?;
            if let Some(other) = seen.insert(id, symbol) {
                return Err(bad(format!(
                    "id {id} is used by both {other:?} and {symbol:?}"
                )));
            }
            ids.insert(symbol.clone(), id);
        }
        // serde_json keeps the last of repeated keys; the reference (Python json) does the same,
        // but a repeated symbol is a broken file, so say so.
        if let Some(dup) = repeated_key(json) {
            return Err(bad(format!("symbol {dup:?} appears more than once")));
        }
        Ok(Vocab { ids })
    }

    /// The token id of `symbol` as the DiT sees it: the file's id **+ 1** (0 is the pad token).
    pub fn token(&self, symbol: &str) -> Option<i64> {
        self.ids.get(symbol).map(|id| id + 1)
    }

    /// The number of symbols.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True if there are no symbols (never the case for a loaded vocabulary).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The largest token id (shifted), i.e. the embedding needs `max_token() + 1` rows.
    pub fn max_token(&self) -> i64 {
        self.ids.values().max().map_or(0, |id| id + 1)
    }
}

/// Finds a key repeated inside the `"vocab"` object, which `serde_json::Value` would silently
/// merge. Only the keys of that object are compared.
fn repeated_key(json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Root {
        vocab: Keys,
    }
    struct Keys(Option<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut seen = HashSet::new();
                    let mut dup = None;
                    while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        if dup.is_none() && !seen.insert(key.clone()) {
                            dup = Some(key);
                        }
                    }
                    Ok(Keys(dup))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Root>(json)
        .ok()
        .and_then(|r| r.vocab.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_ids_by_one() {
        let v = Vocab::from_json_str(r#"{"vocab": {",": 0, ".": 1, "_": 4, "aɪ": 20}}"#).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v.token(","), Some(1));
        assert_eq!(v.token("."), Some(2));
        assert_eq!(v.token("_"), Some(5));
        assert_eq!(v.token("aɪ"), Some(21));
        assert_eq!(v.token("nope"), None);
        assert_eq!(v.max_token(), 21);
    }

    #[test]
    fn rejects_bad_files() {
        for (json, needle) in [
            ("not json", "not valid JSON"),
            (r#"{"tokens": {}}"#, "no \"vocab\""),
            (r#"{"vocab": [1, 2]}"#, "not an object"),
            (r#"{"vocab": {}}"#, "empty"),
            (r#"{"vocab": {"a": "1"}}"#, "not a non-negative integer"),
            (r#"{"vocab": {"a": -1}}"#, "not a non-negative integer"),
            (r#"{"vocab": {"a": 1.5}}"#, "not a non-negative integer"),
            (r#"{"vocab": {"a": 1, "b": 1}}"#, "id 1 is used by both"),
            (
                r#"{"vocab": {"a": 1, "b": 2, "a": 3}}"#,
                "appears more than once",
            ),
        ] {
            let err = Vocab::from_json_str(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
            assert!(err.contains("<string>"), "{err}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = Vocab::load(&missing).unwrap_err().to_string();
        assert!(
            err.contains("missing.json") && err.contains("cannot read"),
            "{err}"
        );

        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\"vocab\": {\"a\": 0, \"b\": 0}}").unwrap();
        let err = Vocab::load(&broken).unwrap_err().to_string();
        assert!(err.contains("broken.json") && err.contains("id 0"), "{err}");

        let good = dir.path().join("good.json");
        std::fs::write(&good, "{\"vocab\": {\"a\": 0, \"b\": 1}}").unwrap();
        assert_eq!(Vocab::load(&good).unwrap().token("b"), Some(2));
    }
}
