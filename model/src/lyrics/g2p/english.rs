//! English G2P: DiffRhythm's `english.py::english_to_ipa` on espeak-ng `en-us`.
//!
//! The steps, each a port of the reference: abbreviations are expanded ("Mr" → "mister"),
//! numbers spelled out ([`super::numbers`]), the text phonemised piece by piece between
//! punctuation marks ([`super::phonemizer`], on [`super::espeak`]), a word separator `_`
//! appended when the string ends in a phone, and a few espeak phones merged or mapped to the
//! symbols of DiffRhythm's vocabulary (`t|ɹ` → `tɹ`, `ɐ` → `ɚ`, …). Case is kept, as in the
//! reference (its `lower()` is commented out), and espeak reads capitals the same anyway.

use std::sync::LazyLock;

use regex::Regex;

use super::numbers::normalize_numbers;
use super::phonemizer::{is_py_word, tokenize};
use super::{espeak, G2p};
use crate::lyrics::LyricsError;

/// `_abbreviations` of `english.py`, in its order (each a whole-word, case-insensitive match).
const ABBREVIATIONS: [(&str, &str); 20] = [
    ("mrs", "misess"),
    ("mr", "mister"),
    ("dr", "doctor"),
    ("st", "saint"),
    ("co", "company"),
    ("jr", "junior"),
    ("maj", "major"),
    ("gen", "general"),
    ("drs", "doctors"),
    ("rev", "reverend"),
    ("lt", "lieutenant"),
    ("hon", "honorable"),
    ("sgt", "sergeant"),
    ("capt", "captain"),
    ("esq", "esquire"),
    ("ltd", "limited"),
    ("col", "colonel"),
    ("ft", "fort"),
    ("etc", "et cetera"),
    ("btw", "by the way"),
];

/// `_special_map` of `english.py`, in its order.
const SPECIAL_MAP: [(&str, &str); 13] = [
    ("t|ɹ", "tɹ"),
    ("d|ɹ", "dɹ"),
    ("t|s", "ts"),
    ("d|z", "dz"),
    ("ɪ|ɹ", "ɪɹ"),
    ("ɐ", "ɚ"),
    ("ᵻ", "ɪ"),
    ("əl", "l"),
    ("x", "k"),
    ("ɬ", "l"),
    ("ʔ", "t"),
    ("n̩", "n"),
    ("oː|ɹ", "oːɹ"),
];

/// `(^|[_|])PHONES([_|]|$)` for each special-map entry.
static SPECIAL_MAP_RES: LazyLock<Vec<(Regex, String)>> = LazyLock::new(|| {
    SPECIAL_MAP
        .iter()
        .map(|(from, to)| {
            let pattern = format!(r"(^|[_|]){}([_|]|$)", regex::escape(from));
            (
                Regex::new(&pattern).expect("static regex"),
                format!("${{1}}{to}${{2}}"),
            )
        })
        .collect()
});

/// The phones after which `english_to_ipa` appends a word separator (`|_`).
const PHONE_END: &str = "p⁼ʰmftnlkxʃs`ɹaoəɛɪeɑʊŋiuɥwæjː";

/// English through espeak-ng's `en-us` voice, as DiffRhythm's reference does it.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnglishG2p;

impl G2p for EnglishG2p {
    fn language(&self) -> &'static str {
        "en"
    }

    fn phonemes(&self, text: &str) -> Result<Vec<String>, LyricsError> {
        // one espeak session (lock + fresh en-us voice) for the whole segment
        let mut session = espeak::session()?;
        let ipa = english_to_ipa(text, &mut |piece| session.text_to_phonemes(piece))?;
        drop(session);
        // PhonemeBpeTokenizer.phoneme2token: the part before a tab, split on "|"
        let ipa = ipa.split('\t').next().unwrap_or_default();
        Ok(ipa.split('|').map(str::to_string).collect())
    }
}

/// `english_to_ipa(text, TextTokenizer("en-us"))`: the phoneme string, phones separated by `|`.
pub fn english_to_ipa(
    text: &str,
    espeak: &mut dyn FnMut(&str) -> Result<String, LyricsError>,
) -> Result<String, LyricsError> {
    let text = expand_abbreviations(text);
    let text = normalize_numbers(&text).map_err(|e| LyricsError::Unpronounceable {
        text: text.clone(),
        reason: format!("cannot spell a number: {e}"),
    })?;
    let mut phonemes = tokenize(&text, espeak)?;
    let Some(last) = phonemes.chars().last() else {
        // the reference fails with an IndexError here
        return Err(LyricsError::Unpronounceable {
            text,
            reason: "espeak-ng produced no phonemes".to_string(),
        });
    };
    if PHONE_END.contains(last) {
        phonemes.push_str("|_");
    }
    Ok(special_map(&phonemes))
}

/// `expand_abbreviations`: each `\babbr\b` (case-insensitive) replaced, one abbreviation after
/// the other.
pub fn expand_abbreviations(text: &str) -> String {
    let mut text = text.to_string();
    for (abbr, full) in ABBREVIATIONS {
        text = replace_word(&text, abbr, full);
    }
    text
}

/// Python's `re.sub(r"\bWORD\b", full, text, flags=re.IGNORECASE)` for an ASCII lowercase word,
/// with Python's `\w` (letters, numbers, `_`) deciding the boundaries.
fn replace_word(text: &str, word: &str, full: &str) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let pattern: Vec<char> = word.chars().collect();
    let is_word = |i: usize| chars.get(i).is_some_and(|&(_, c)| is_py_word(c));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0; // byte offset copied so far
    while i + pattern.len() <= chars.len() {
        let boundary_before = i == 0 || !is_word(i - 1);
        let end = i + pattern.len();
        if boundary_before
            && !is_word(end)
            && pattern
                .iter()
                .zip(&chars[i..end])
                .all(|(&p, &(_, c))| ignore_case_eq(c, p))
        {
            out.push_str(&text[copied..chars[i].0]);
            out.push_str(full);
            copied = chars.get(end).map_or(text.len(), |&(at, _)| at);
            i = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether `c` matches the ASCII lowercase letter `p` under Python's `re.IGNORECASE`: either
/// case, and the long s `ſ` for `s` (the abbreviations contain no `i` or `k`, whose Unicode
/// look-alikes Python also accepts).
fn ignore_case_eq(c: char, p: char) -> bool {
    c.to_ascii_lowercase() == p || (p == 's' && c == 'ſ')
}

/// `special_map`: whole phones (between `_`/`|` or the ends) replaced until none is left.
pub fn special_map(text: &str) -> String {
    // Python's `$` also matches before a final newline: handle it by setting that newline aside
    let (body, newline) = match text.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (text, ""),
    };
    let mut text = body.to_string();
    for (regex, replacement) in SPECIAL_MAP_RES.iter() {
        while regex.is_match(&text) {
            text = regex.replace_all(&text, replacement.as_str()).into_owned();
        }
    }
    text + newline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviations() {
        assert_eq!(
            expand_abbreviations("Mr. Brown and Mrs. Jones met Dr. Who"),
            "mister. Brown and misess. Jones met doctor. Who"
        );
        assert_eq!(
            expand_abbreviations("St. Louis, MR. T, co-op, Drs. X"),
            "saint. Louis, mister. T, company-op, doctors. X"
        );
        assert_eq!(expand_abbreviations("ſt"), "saint");
        // no boundary: left alone
        assert_eq!(
            expand_abbreviations("mrs_x Mister strong drsx 1st"),
            "mrs_x Mister strong drsx 1st"
        );
        assert_eq!(
            expand_abbreviations("Gen Z, btw etc"),
            "general Z, by the way et cetera"
        );
        assert_eq!(expand_abbreviations("éco"), "éco");
        assert_eq!(expand_abbreviations("co"), "company");
    }

    #[test]
    fn special_map_merges_whole_phones() {
        assert_eq!(special_map("t|ɹ|aɪ|_"), "tɹ|aɪ|_");
        assert_eq!(special_map("w|ɜː|d|z"), "w|ɜː|dz");
        assert_eq!(special_map("t|s|t|s"), "ts|ts");
        assert_eq!(special_map("ɐ|əl|x"), "ɚ|l|k");
        assert_eq!(special_map("m|oː|ɹ|_|oː"), "m|oːɹ|_|oː");
        assert_eq!(special_map("ət|s"), "ət|s");
        assert_eq!(special_map("t|ɹ\n"), "tɹ\n");
    }

    #[test]
    fn english_to_ipa_with_fake_espeak() {
        let mut fake = |s: &str| -> Result<String, LyricsError> {
            Ok(match s {
                "mister" => "m_ˈɪ_s_t_ɚ".to_string(),
                "Brown" => "b_ɹ_ˈaʊ_n".to_string(),
                other => panic!("unexpected espeak input {other:?}"),
            })
        };
        assert_eq!(
            english_to_ipa("Mr. Brown", &mut fake).unwrap(),
            "m|ɪ|s|t|ɚ|.|b|ɹ|aʊ|n|_"
        );
        let err = english_to_ipa("x", &mut |_| Ok(String::new())).unwrap_err();
        assert!(matches!(err, LyricsError::Unpronounceable { .. }), "{err}");
        let err = english_to_ipa(&"9".repeat(40), &mut |_| Ok("a".into())).unwrap_err();
        assert!(err.to_string().contains("cannot spell a number"), "{err}");
    }
}
