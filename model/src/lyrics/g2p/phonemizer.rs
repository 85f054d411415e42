//! The text → phoneme-string step of DiffRhythm's English G2P: `text_tokenizers.TextTokenizer`
//! on top of `phonemizer` 3.3.0's `EspeakBackend`, re-implemented without Python.
//!
//! DiffRhythm configures phonemizer with `preserve_punctuation=True` and the marks `,.?!;:'…`,
//! separators phone `|`, word `|_|`, syllable `-`, `with_stress=False`,
//! `language_switch="remove-flags"` and `strip=True`. With punctuation preserved, phonemizer
//! cuts each line at every run of marks, sends each piece to espeak-ng on its own, and glues the
//! marks back between the phonemised pieces. That is why "don't" is read as "don" + `'` + "t"
//! (the letter T): the model was trained on exactly that, so it is reproduced here, piece by
//! piece. espeak itself is behind a callback so that this logic can be tested without it.

use std::sync::LazyLock;

use regex::Regex;

use crate::lyrics::LyricsError;

/// The punctuation marks TextTokenizer preserves.
pub const MARKS: &str = ",.?!;:'…";
const WORD_SEP: &str = "|_|";
const PHONE_SEP: &str = "|";

/// Python's `\s` (and `str.isspace`): Unicode White_Space plus U+001C..U+001F.
const PY_SPACE: &str = r"\s\x1C-\x1F";
/// Python's `\w` for `str` patterns is exactly `[\p{L}\p{N}_]` (checked on Unicode 14).
const PY_WORD: &str = r"\p{L}\p{N}_";

static PY_WORD_CHAR: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"\A[{PY_WORD}]\z")));
static NOT_KEPT: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"[^{PY_WORD}{PY_SPACE},.?!;:'…]")));
static SPACED_MARK: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"[{PY_SPACE}]*([,.?!;:'…])[{PY_SPACE}]*")));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"[{PY_SPACE}]+")));
/// phonemizer's `Punctuation._marks_re` for MARKS.
static MARK_RUNS: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"(?:[{PY_SPACE}]*[,.?!;:'…]+[{PY_SPACE}]*)+")));
static UNDERSCORES: LazyLock<Regex> = LazyLock::new(|| re(r"_+"));
static LANGUAGE_FLAG: LazyLock<Regex> = LazyLock::new(|| re(r"\(.+?\)"));
static STRESS: LazyLock<Regex> = LazyLock::new(|| re(r"[ˈˌ'-]+"));
static MARK: LazyLock<Regex> = LazyLock::new(|| re(r"([,.?!;:'…])"));
static PIPES: LazyLock<Regex> = LazyLock::new(|| re(r"\|+"));

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

/// Python's `str.isspace()`.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Whether Python's `\w` matches `c`.
pub fn is_py_word(c: char) -> bool {
    PY_WORD_CHAR.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Python's `str.strip()` (no argument).
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// `TextTokenizer.convert_chinese_punctuation`.
fn convert_chinese_punctuation(text: &str) -> String {
    let mut text = text.to_string();
    for (from, to) in [
        ("，", ","),
        ("。", "."),
        ("！", "!"),
        ("？", "?"),
        ("；", ";"),
        ("：", ":"),
        ("、", ","),
        ("‘", "'"),
        ("’", "'"),
        ("⋯", "…"),
        ("···", "…"),
        ("・・・", "…"),
        ("...", "…"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// The per-line normalisation of `TextTokenizer.__call__`.
fn normalize_line(line: &str) -> String {
    let line = convert_chinese_punctuation(py_strip(line));
    let line = NOT_KEPT.replace_all(&line, "");
    let line = SPACED_MARK.replace_all(&line, "${1}");
    SPACES.replace_all(&line, " ").into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    Begin,
    End,
    Inside,
    Alone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MarkIndex {
    line: usize,
    mark: String,
    position: Position,
}

/// `Punctuation.preserve`: the lines cut at the runs of marks (empty pieces dropped), and the
/// marks with where they were.
fn preserve(lines: &[String]) -> (Vec<String>, Vec<MarkIndex>) {
    let mut pieces = Vec::new();
    let mut marks = Vec::new();
    for (num, line) in lines.iter().enumerate() {
        let found: Vec<&str> = MARK_RUNS.find_iter(line).map(|m| m.as_str()).collect();
        if found.is_empty() {
            pieces.push(line.clone());
            continue;
        }
        if found.len() == 1 && found[0] == line {
            marks.push(MarkIndex {
                line: num,
                mark: line.clone(),
                position: Position::Alone,
            });
            continue;
        }
        let line_marks: Vec<MarkIndex> = found
            .iter()
            .enumerate()
            .map(|(i, mark)| {
                let position = if i == 0 && line.starts_with(mark) {
                    Position::Begin
                } else if i == found.len() - 1 && line.ends_with(mark) {
                    Position::End
                } else {
                    Position::Inside
                };
                MarkIndex {
                    line: num,
                    mark: mark.to_string(),
                    position,
                }
            })
            .collect();
        // each mark cuts the rest of the line at the mark's first occurrence
        let mut rest = line.as_str();
        for mark in &line_marks {
            match rest.find(&mark.mark) {
                Some(at) => {
                    pieces.push(rest[..at].to_string());
                    rest = &rest[at + mark.mark.len()..];
                }
                None => {
                    pieces.push(rest.to_string());
                    rest = "";
                }
            }
        }
        pieces.push(rest.to_string());
        marks.extend(line_marks);
    }
    pieces.retain(|p| !p.is_empty());
    (pieces, marks)
}

/// `Punctuation.restore` with `strip=True` and the word separator `|_|`.
fn restore(mut text: Vec<String>, marks: Vec<MarkIndex>) -> Vec<String> {
    let mut out = Vec::new();
    let mut marks = std::collections::VecDeque::from(marks);
    text.reverse(); // pop() from the end is text[0]
    let mut pos = 0;
    while !text.is_empty() || !marks.is_empty() {
        if marks.is_empty() {
            while let Some(line) = text.pop() {
                out.push(line);
            }
        } else if text.is_empty() {
            let all: String = marks.iter().map(|m| m.mark.as_str()).collect();
            out.push(all.replace(' ', WORD_SEP));
            marks.clear();
        } else if marks[0].line == pos {
            let current = marks.pop_front().expect("not empty");
            let mark = current.mark.replace(' ', WORD_SEP);
            let first = text.last_mut().expect("not empty");
            if first.ends_with(WORD_SEP) {
                first.truncate(first.len() - WORD_SEP.len());
            }
            match current.position {
                Position::Begin => *first = format!("{mark}{first}"),
                Position::End => {
                    let first = text.pop().expect("not empty");
                    out.push(format!("{first}{mark}"));
                    pos += 1;
                }
                Position::Alone => {
                    out.push(mark);
                    pos += 1;
                }
                Position::Inside => {
                    if text.len() == 1 {
                        text[0].push_str(&mark);
                    } else {
                        let first = text.pop().expect("not empty");
                        let next = text.last_mut().expect("two or more");
                        *next = format!("{first}{mark}{next}");
                    }
                }
            }
        } else {
            out.push(text.pop().expect("not empty"));
            pos += 1;
        }
    }
    out
}

/// `EspeakBackend._postprocess_line` with the separators above, `strip=True`, no stress, no
/// tie, and the `remove-flags` language switch policy.
fn postprocess_espeak(line: &str) -> String {
    let line = py_strip(line).replace('\n', " ").replace("  ", " ");
    let line = UNDERSCORES.replace_all(&line, "_");
    let line = line.replace("_ ", " ");
    let line = LANGUAGE_FLAG.replace_all(&line, "");
    if line.is_empty() {
        return String::new();
    }
    let words: Vec<String> = line
        .split(' ')
        .map(|word| {
            STRESS
                .replace_all(py_strip(word), "")
                .replace('_', PHONE_SEP)
        })
        .collect();
    words.join(WORD_SEP)
}

/// `TextTokenizer(text)` for a `str` argument: the phoneme string with `|` between phones,
/// `|_|` between words and the marks as their own symbols. `espeak` is
/// `EspeakWrapper.text_to_phonemes` for the en-us voice.
pub fn tokenize(
    text: &str,
    espeak: &mut dyn FnMut(&str) -> Result<String, LyricsError>,
) -> Result<String, LyricsError> {
    // str2list: strip newlines at both ends, split on newlines
    let lines: Vec<String> = text
        .trim_matches('\n')
        .split('\n')
        .map(normalize_line)
        .collect();
    let (pieces, marks) = preserve(&lines);
    let mut phonemized = Vec::with_capacity(pieces.len());
    for piece in &pieces {
        phonemized.push(postprocess_espeak(&espeak(piece)?));
    }
    let joined = restore(phonemized, marks).join("\n");
    let spaced = MARK.replace_all(&joined, "|${1}|");
    let single = PIPES.replace_all(&spaced, "|");
    Ok(single.trim_end_matches('|').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace() {
        assert!(is_py_space('\u{1f}') && is_py_space('\u{3000}') && is_py_space('\t'));
        assert!(!is_py_space('\u{200b}') && !is_py_space('a'));
        assert_eq!(py_strip("\u{1c} a b\u{85}"), "a b");
        assert!(is_py_word('_') && is_py_word('é') && is_py_word('½') && is_py_word('٣'));
        assert!(!is_py_word('\u{301}') && !is_py_word('-') && !is_py_word(' '));
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize_line("  Hello ,  world ! "), "Hello,world!");
        assert_eq!(normalize_line("Wait... what"), "Wait…what");
        assert_eq!(normalize_line("(a) - [b] \"c\""), "a b c");
        assert_eq!(normalize_line("你好，世界。"), "你好,世界.");
        assert_eq!(normalize_line("a\t\tb ½ ²"), "a b ½ ²");
        assert_eq!(normalize_line("hello -"), "hello ");
        assert_eq!(normalize_line("I ♥ you"), "I you");
    }

    fn pieces(line: &str) -> (Vec<String>, Vec<(String, Position)>) {
        let (p, m) = preserve(&[line.to_string()]);
        (p, m.into_iter().map(|m| (m.mark, m.position)).collect())
    }

    #[test]
    fn preserve_cuts_at_marks() {
        use Position::*;
        assert_eq!(pieces("hello"), (vec!["hello".into()], vec![]));
        assert_eq!(
            pieces("don't,stop!"),
            (
                vec!["don".into(), "t".into(), "stop".into()],
                vec![
                    ("'".into(), Inside),
                    (",".into(), Inside),
                    ("!".into(), End)
                ]
            )
        );
        assert_eq!(
            pieces("'cause"),
            (vec!["cause".into()], vec![("'".into(), Begin)])
        );
        assert_eq!(pieces("?!"), (vec![], vec![("?!".into(), Alone)]));
        assert_eq!(
            pieces("a , b"),
            (vec!["a".into(), "b".into()], vec![(" , ".into(), Inside)])
        );
    }

    #[test]
    fn restore_glues_marks_back() {
        let fake = |s: &str| -> Result<String, LyricsError> { Ok(s.to_uppercase()) };
        for (line, expected) in [
            ("don't,stop!", "DON'T,STOP!"),
            ("'cause", "'CAUSE"),
            ("?!", "?!"),
            ("wait… what?", "WAIT…|_|WHAT?"), // spaces in a mark become word separators
        ] {
            let (p, m) = preserve(&[line.to_string()]);
            let out: Vec<String> = p.iter().map(|p| fake(p).unwrap()).collect();
            assert_eq!(restore(out, m), [expected], "{line}");
        }
        // phonemizer's line bookkeeping with an empty middle line: the mark ends up alone
        let lines = ["a".to_string(), String::new(), "b,".to_string()];
        let (p, m) = preserve(&lines);
        assert_eq!(restore(p, m), ["a", "b", ","]);
    }

    #[test]
    fn espeak_output_postprocessing() {
        assert_eq!(
            postprocess_espeak("h_ə_l_ˈoʊ w_ˈɜː_l_d"),
            "h|ə|l|oʊ|_|w|ɜː|l|d"
        );
        assert_eq!(postprocess_espeak(" ˈɛ_m "), "ɛ|m");
        assert_eq!(
            postprocess_espeak("(ko)_ˈɐ_n_n_j_ʌ_ŋ_(en-us) h_ˈaɪ"),
            "|ɐ|n|n|j|ʌ|ŋ||_|h|aɪ"
        );
        assert_eq!(
            postprocess_espeak("l_ˈæ_m_d_ə__ˈæ_l_f_ə_"),
            "l|æ|m|d|ə|æ|l|f|ə|"
        );
        assert_eq!(postprocess_espeak("(fr)"), "");
        assert_eq!(postprocess_espeak(""), "");
    }

    #[test]
    fn tokenize_with_fake_espeak() {
        // a stand-in for espeak that spells each word's letters as phones
        let mut calls = Vec::new();
        let mut fake = |s: &str| -> Result<String, LyricsError> {
            calls.push(s.to_string());
            Ok(s.split(' ')
                .map(|w| w.chars().map(String::from).collect::<Vec<_>>().join("_"))
                .collect::<Vec<_>>()
                .join(" "))
        };
        let out = tokenize("Don't stop... now!", &mut fake).unwrap();
        assert_eq!(out, "D|o|n|'|t|_|s|t|o|p|…|n|o|w|!");
        assert_eq!(calls, ["Don", "t stop", "now"]);
        let err = tokenize("x", &mut |_| Err(LyricsError::Phonemizer("boom".into())));
        assert!(err.is_err());
    }
}
