//! Text normalisation and word segmentation of the Mandarin front end: the reference's
//! `normalization`, `jieba.lcut` (jieba-rs with its default dictionary and HMM, which cuts as
//! jieba 0.42.1 does: checked on the golden lines) and the `merge_yi`, `merge_bu` and `merge_er`
//! passes, ported literally — including their quirks (a trailing 不 is dropped; the 一 merge
//! indexes its output list with the input's index), because the polyphone model is given
//! character positions counted over the merged words.

use std::sync::OnceLock;

use jieba_rs::Jieba;
use regex::Regex;

/// The reference's `normalization`: Chinese punctuation to ASCII, whitespace removed, and
/// everything but CJK ideographs (U+4E00..=U+9FFF) and `_,.?!;:'…` removed.
pub fn normalize(text: &str) -> String {
    let mut s = text.to_string();
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
        s = s.replace(from, to);
    }
    s.chars()
        .filter(|&c| {
            !c.is_whitespace()
                && (('\u{4e00}'..='\u{9fff}').contains(&c) || "_,.?!;:'…".contains(c))
        })
        .collect()
}

fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

/// Loads jieba's dictionary now rather than on the first Chinese line.
pub fn warm_up() {
    jieba();
}

/// `jieba.lcut(text)`: accurate mode with the HMM for unknown words.
pub fn cut(text: &str) -> Vec<String> {
    jieba()
        .cut(text, true)
        .into_iter()
        .map(|t| t.word.to_string())
        .collect()
}

/// `merge_yi`: `X 一 X` becomes one word (as the reference indexes it), then 一 joins the word
/// after it.
pub fn merge_yi(seg: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in seg.iter().enumerate() {
        if i >= 1 && word == "一" && i + 1 < seg.len() && seg[i - 1] == seg[i + 1] {
            if i - 1 < out.len() {
                let w = out[i - 1].clone();
                out[i - 1] = format!("{w}一{w}");
            } else {
                out.push(word.clone());
                out.push(seg[i + 1].clone());
            }
        } else if i >= 2 && seg[i - 1] == "一" && seg[i - 2] == *word {
            continue;
        } else {
            out.push(word.clone());
        }
    }
    let mut merged: Vec<String> = Vec::new();
    for word in out {
        match merged.last_mut() {
            Some(last) if last == "一" => last.push_str(&word),
            _ => merged.push(word),
        }
    }
    merged
}

/// `merge_bu`: 不 joins the word after it; a 不 with no word after it is lost.
pub fn merge_bu(seg: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = String::new();
    for word in seg {
        let mut word = word.clone();
        if word != "不" {
            if last == "不" {
                word = format!("{last}{word}");
            }
            out.push(word.clone());
        }
        last = word;
    }
    out
}

/// `merge_er`: a lone 儿 joins the word before it.
pub fn merge_er(seg: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, word) in seg.iter().enumerate() {
        match out.last_mut() {
            Some(last) if i >= 1 && word == "儿" => last.push_str(word),
            _ => out.push(word.clone()),
        }
    }
    out
}

/// Whether the reference's `re.search("[\u4e00-\u9fff]", word)` finds an ideograph.
pub fn has_ideograph(word: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new("[\u{4e00}-\u{9fff}]").expect("valid regex"))
        .is_match(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn normalizes_punctuation_and_strips() {
        assert_eq!(normalize("你好， 世界！abc 123…"), "你好,世界!…");
        assert_eq!(normalize("“你好”，他说‘再见’……"), "你好,他说'再见'……");
        assert_eq!(normalize("a...b···"), "……");
    }

    #[test]
    fn merges_as_the_reference() {
        assert_eq!(merge_yi(&words(&["看", "一", "看"])), ["看一看"]);
        assert_eq!(
            merge_yi(&words(&["看", "一", "看", "想", "一", "想"])),
            ["看一看", "想", "一想"]
        );
        assert_eq!(merge_yi(&words(&["一", "个", "人"])), ["一个", "人"]);
        assert_eq!(merge_bu(&words(&["不", "要", "你", "不"])), ["不要", "你"]);
        assert_eq!(merge_bu(&words(&["不", "不", "好"])), ["不好"]);
        assert_eq!(merge_er(&words(&["儿", "一点", "儿"])), ["儿", "一点儿"]);
    }
}
