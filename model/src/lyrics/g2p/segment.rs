//! Splitting a lyric line into language runs, as `g2p_generation.py::get_segment` does.
//!
//! Each character is typed `zh` (U+4E00..=U+9FA5), `en` (ASCII letters) or `other`. Runs of one
//! type are merged, and `other` characters (spaces, digits, punctuation, accented or non-Latin
//! letters) join the run they follow; a leading `other` run takes the type of the first `zh`/`en`
//! character after it. So a segment is `other` only when the whole text has no CJK ideograph and
//! no ASCII letter, and the empty text is one segment of language `""`: both are rejected by the
//! reference ("Unknown language").

/// The language of a run of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Mandarin: CJK unified ideographs U+4E00..=U+9FA5.
    Zh,
    /// English: ASCII letters (and everything "other" attached to them).
    En,
    /// No CJK ideograph and no ASCII letter at all.
    Other,
    /// The empty text.
    Empty,
}

impl Lang {
    /// The reference's name of the language (`""` for the empty text).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
            Lang::Other => "other",
            Lang::Empty => "",
        }
    }

    fn of(c: char) -> Lang {
        if ('\u{4e00}'..='\u{9fa5}').contains(&c) {
            Lang::Zh
        } else if c.is_ascii_alphabetic() {
            Lang::En
        } else {
            Lang::Other
        }
    }
}

/// One run of text and its language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub text: &'a str,
    pub lang: Lang,
}

/// Splits `text` into language runs; never returns an empty list.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut lang = Lang::Empty;
    for (i, c) in text.char_indices() {
        let t = Lang::of(c);
        if lang == Lang::Empty || lang == Lang::Other {
            // the first character, or an `other` run taking the type of what follows
            lang = t;
        } else if t != lang && t != Lang::Other {
            out.push(Segment {
                text: &text[start..i],
                lang,
            });
            start = i;
            lang = t;
        }
    }
    out.push(Segment {
        text: &text[start..],
        lang,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str) -> Vec<(&str, &str)> {
        segments(text)
            .into_iter()
            .map(|s| (s.text, s.lang.code()))
            .collect()
    }

    #[test]
    fn english_only() {
        assert_eq!(seg("Hello, world!"), [("Hello, world!", "en")]);
        assert_eq!(seg("99 problems"), [("99 problems", "en")]);
        assert_eq!(seg("  café 1999"), [("  café 1999", "en")]);
    }

    #[test]
    fn mixed_runs() {
        assert_eq!(
            seg("你好，hello world, 再见"),
            [("你好，", "zh"), ("hello world, ", "en"), ("再见", "zh")]
        );
        assert_eq!(seg("hi你"), [("hi", "en"), ("你", "zh")]);
        assert_eq!(seg("...你 好 ok"), [("...你 好 ", "zh"), ("ok", "en")]);
        // the range stops at U+9FA5, so U+9FA6 is `other`
        assert_eq!(seg("a\u{9fa6}"), [("a\u{9fa6}", "en")]);
    }

    #[test]
    fn no_letters() {
        assert_eq!(seg(""), [("", "")]);
        assert_eq!(seg("99"), [("99", "other")]);
        assert_eq!(seg("...!?"), [("...!?", "other")]);
        assert_eq!(seg("é ü"), [("é ü", "other")]);
        assert_eq!(seg("안녕"), [("안녕", "other")]);
    }
}
