//! Bopomofo to the IPA symbols of DiffRhythm's vocabulary, as the reference's
//! `bopomofo_to_ipa` table and the clean-up regexes of `_chinese_to_ipa`: finals carry their tone
//! as an arrow (`→` first, `↑` second, `↓↑` third, `↓` fourth, none for the neutral tone),
//! symbols are separated by `|`, and punctuation becomes its own symbol.
//!
//! (The reference also runs a Latin letter → bopomofo table first; it cannot match, because the
//! normalisation before it removed every Latin letter, so it is left out.)

use std::sync::OnceLock;

use regex::Regex;

/// The reference's `_bopomofo_to_ipa`, applied in order (each a literal replacement).
const TABLE: &[(&str, &str)] = &[
    ("ㄅㄛ", "p⁼wo"),
    ("ㄆㄛ", "pʰwo"),
    ("ㄇㄛ", "mwo"),
    ("ㄈㄛ", "fwo"),
    ("ㄧㄢ", "|jɛn"),
    ("ㄩㄢ", "|ɥæn"),
    ("ㄧㄣ", "|in"),
    ("ㄩㄣ", "|ɥn"),
    ("ㄧㄥ", "|iŋ"),
    ("ㄨㄥ", "|ʊŋ"),
    ("ㄩㄥ", "|jʊŋ"),
    ("ㄧㄚ", "|ia"),
    ("ㄧㄝ", "|iɛ"),
    ("ㄧㄠ", "|iɑʊ"),
    ("ㄧㄡ", "|ioʊ"),
    ("ㄧㄤ", "|iɑŋ"),
    ("ㄨㄚ", "|ua"),
    ("ㄨㄛ", "|uo"),
    ("ㄨㄞ", "|uaɪ"),
    ("ㄨㄟ", "|ueɪ"),
    ("ㄨㄢ", "|uan"),
    ("ㄨㄣ", "|uən"),
    ("ㄨㄤ", "|uɑŋ"),
    ("ㄩㄝ", "|ɥɛ"),
    ("ㄅ", "p⁼"),
    ("ㄆ", "pʰ"),
    ("ㄇ", "m"),
    ("ㄈ", "f"),
    ("ㄉ", "t⁼"),
    ("ㄊ", "tʰ"),
    ("ㄋ", "n"),
    ("ㄌ", "l"),
    ("ㄍ", "k⁼"),
    ("ㄎ", "kʰ"),
    ("ㄏ", "x"),
    ("ㄐ", "tʃ⁼"),
    ("ㄑ", "tʃʰ"),
    ("ㄒ", "ʃ"),
    ("ㄓ", "ts`⁼"),
    ("ㄔ", "ts`ʰ"),
    ("ㄕ", "s`"),
    ("ㄖ", "ɹ`"),
    ("ㄗ", "ts⁼"),
    ("ㄘ", "tsʰ"),
    ("ㄙ", "|s"),
    ("ㄚ", "|a"),
    ("ㄛ", "|o"),
    ("ㄜ", "|ə"),
    ("ㄝ", "|ɛ"),
    ("ㄞ", "|aɪ"),
    ("ㄟ", "|eɪ"),
    ("ㄠ", "|ɑʊ"),
    ("ㄡ", "|oʊ"),
    ("ㄢ", "|an"),
    ("ㄣ", "|ən"),
    ("ㄤ", "|ɑŋ"),
    ("ㄥ", "|əŋ"),
    ("ㄦ", "əɹ"),
    ("ㄧ", "|i"),
    ("ㄨ", "|u"),
    ("ㄩ", "|ɥ"),
    ("ˉ", "→|"),
    ("ˊ", "↑|"),
    ("ˇ", "↓↑|"),
    ("ˋ", "↓|"),
    ("˙", "|"),
];

fn regexes() -> &'static [Regex; 5] {
    static RE: OnceLock<[Regex; 5]> = OnceLock::new();
    RE.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("valid regex");
        [
            re("([sɹ]`[⁼ʰ]?)([→↓↑ ]+|$)"),
            re("([s][⁼ʰ]?)([→↓↑ ]+|$)"),
            re(r"^\||[^\w\s_,\.\?!;:'…\|→↓↑⁼ʰ`]"),
            re(r"([,\.\?!;:'…])"),
            re(r"\|+"),
        ]
    })
}

/// The line's bopomofo text (syllables and punctuation separated by `|`) to its IPA symbols.
pub fn to_ipa(bopomofo: &str) -> Vec<String> {
    let mut text = bopomofo.to_string();
    for (from, to) in TABLE {
        if text.contains(from) {
            text = text.replace(from, to);
        }
    }
    let [retroflex, sibilant, strip, punct, bars] = regexes();
    let text = retroflex.replace_all(&text, "${1}ɹ${2}");
    let text = sibilant.replace_all(&text, "${1}ɹ${2}");
    let text = strip.replace_all(&text, "");
    let text = punct.replace_all(&text, "|${1}|");
    let text = bars.replace_all(&text, "|");
    let text = text.trim_end_matches('|');
    if text.is_empty() {
        return Vec::new();
    }
    text.split('|').map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::to_ipa;

    #[test]
    fn converts_with_tones() {
        assert_eq!(to_ipa("ㄋㄧˊ|ㄏㄠˇ"), ["n", "i↑", "x", "ɑʊ↓↑"]);
        assert_eq!(to_ipa("ㄕˋ|,|ㄙˉ"), ["s`ɹ↓", ",", "sɹ→"]);
        assert_eq!(to_ipa("ㄌㄜ˙|.|"), ["l", "ə", "."]);
        assert_eq!(to_ipa("ㄓㄢˇˊ"), ["ts`⁼", "an↓↑", "↑"]);
    }
}
