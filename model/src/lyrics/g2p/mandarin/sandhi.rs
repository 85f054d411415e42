//! Tone sandhi on one word's bopomofo syllables, ported literally from the reference's
//! `chinese_to_bopomofo`, `bu_sandhi`, `yi_sandhi` and `er_sandhi` (quirks included: the 3-3
//! rule of three-character words appends ˊ after ˇ instead of replacing it). Tone marks are
//! the bopomofo ones: none for the first tone, ˊ ˇ ˋ, ˙ for the neutral tone.
//!
//! Where the reference would raise (an empty syllable, fewer syllables than characters for an
//! index it reads) the word is reported as [`SandhiError`], and the line is refused.

use thiserror::Error;

/// The reference indexes past a word's syllables (it raises `IndexError` there).
#[derive(Debug, Error)]
#[error("word {word:?}: tone sandhi reads syllable {index} of {syllables:?}")]
pub struct SandhiError {
    pub word: String,
    pub index: usize,
    pub syllables: Vec<String>,
}

/// The CJK ideographs in U+4E00..=U+9FA5 whose Python `str.isnumeric()` is true (Unicode
/// Numeric_Type), for `yi_sandhi`'s test.
const NUMERIC: &str = "一七万三九二五亖亿什仟仨伍佰億兆兩八六十千卄卅卌叁参參叄四壱壹幺廾廿弌弍弎弐拾捌柒漆玖百肆萬貮貳贰阡陆陌陸零";

fn is_numeric(c: char) -> bool {
    c.is_numeric() || NUMERIC.contains(c)
}

struct Word<'a> {
    word: &'a str,
    chars: Vec<char>,
    b: Vec<String>,
}

impl Word<'_> {
    fn err(&self, index: usize) -> SandhiError {
        SandhiError {
            word: self.word.to_string(),
            index,
            syllables: self.b.clone(),
        }
    }

    /// `bopomofos[i][-1]`.
    fn last(&self, i: usize) -> Result<char, SandhiError> {
        self.b
            .get(i)
            .and_then(|s| s.chars().last())
            .ok_or_else(|| self.err(i))
    }

    /// `bopomofos[i][:-1]`.
    fn init(&self, i: usize) -> Result<String, SandhiError> {
        let s = self.b.get(i).ok_or_else(|| self.err(i))?;
        let mut s = s.clone();
        s.pop();
        Ok(s)
    }

    fn set(&mut self, i: usize, value: String) -> Result<(), SandhiError> {
        match self.b.get_mut(i) {
            Some(s) => {
                *s = value;
                Ok(())
            }
            None => Err(self.err(i)),
        }
    }

    /// `change_tone(bopomofos[i], tone)`.
    fn change_tone(&mut self, i: usize, tone: &str) -> Result<(), SandhiError> {
        let last = self.last(i)?;
        let value = if "˙ˊˇˋ".contains(last) {
            self.init(i)? + tone
        } else {
            self.b[i].clone() + tone
        };
        self.set(i, value)
    }
}

/// Applies the 3-3, 不, 一 and 儿 rules to the syllables of `word`, in the reference's order.
pub fn apply(word: &str, bopomofos: Vec<String>) -> Result<Vec<String>, SandhiError> {
    let mut w = Word {
        word,
        chars: word.chars().collect(),
        b: bopomofos,
    };
    let n = w.chars.len();
    if n == 3 && w.last(0)? == 'ˇ' && w.last(1)? == 'ˇ' && w.last(w.b.len().wrapping_sub(1))? == 'ˇ'
    {
        let (a, b) = (w.b[0].clone() + "ˊ", w.b[1].clone() + "ˊ");
        w.set(0, a)?;
        w.set(1, b)?;
    }
    if n == 2 && w.last(0)? == 'ˇ' && w.last(w.b.len().wrapping_sub(1))? == 'ˇ' {
        let a = w.init(0)? + "ˊ";
        w.set(0, a)?;
    }
    bu(&mut w)?;
    yi(&mut w)?;
    // er_sandhi
    const NOT_ER: [&str; 5] = ["女儿", "老儿", "男儿", "少儿", "小儿"];
    if n > 1 && w.chars[n - 1] == '儿' && !NOT_ER.contains(&word) {
        w.change_tone(w.b.len().wrapping_sub(1), "˙")?;
    }
    Ok(w.b)
}

fn bu(w: &mut Word) -> Result<(), SandhiError> {
    let n = w.chars.len();
    if w.chars.iter().all(|&c| c == '不') || w.word == "不字" {
        return Ok(());
    }
    if n == 3 && w.chars[1] == '不' && w.init(1)? == "ㄅㄨ" {
        let v = w.init(1)? + "˙";
        return w.set(1, v);
    }
    for i in 0..n {
        if i + 1 < w.b.len()
            && w.chars[i] == '不'
            && i + 1 < n
            && !w.b[i + 1].is_empty()
            && w.last(i + 1)? == 'ˋ'
        {
            let v = w.init(i)? + "ˊ";
            w.set(i, v)?;
        }
    }
    Ok(())
}

fn yi(w: &mut Word) -> Result<(), SandhiError> {
    const PUNC: &str = "：，；。？！“”‘’':,;.?!()（）{}【】[]-~`、 ";
    let n = w.chars.len();
    let chars = w.chars.clone();
    if chars.contains(&'一') && chars.iter().any(|&c| c != '一' && is_numeric(c)) {
        for i in 0..n {
            if i == 0 && chars[0] == '一' && n > 1 && !"零一二三四五六七八九十".contains(chars[1])
            {
                let first = w.b.first().ok_or_else(|| w.err(0))?;
                if !first.is_empty() && "ˋ˙".contains(w.last(1)?) {
                    w.change_tone(0, "ˊ")?;
                } else {
                    w.change_tone(0, "ˋ")?;
                }
            } else if chars[i] == '一' {
                w.change_tone(i, "")?;
            }
        }
        return Ok(());
    }
    if n == 3 && chars[1] == '一' && chars[0] == chars[2] {
        w.change_tone(1, "˙")?;
    } else if w.word.starts_with("第一") {
        w.change_tone(1, "")?;
    } else if ["一月", "一日", "一号"]
        .iter()
        .any(|p| w.word.starts_with(p))
    {
        w.change_tone(0, "")?;
    } else {
        for i in 0..n {
            if chars[i] == '一' && i + 1 < n {
                if w.b.len() > i + 1 && !w.b[i + 1].is_empty() && w.last(i + 1)? == 'ˋ' {
                    w.change_tone(i, "ˊ")?;
                } else if !PUNC.contains(chars[i + 1]) {
                    w.change_tone(i, "ˋ")?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::apply;

    fn run(word: &str, b: &[&str]) -> Vec<String> {
        apply(word, b.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn third_tones() {
        assert_eq!(run("你好", &["ㄋㄧˇ", "ㄏㄠˇ"]), ["ㄋㄧˊ", "ㄏㄠˇ"]);
        assert_eq!(
            run("展览馆", &["ㄓㄢˇ", "ㄌㄢˇ", "ㄍㄨㄢˇ"]),
            ["ㄓㄢˇˊ", "ㄌㄢˇˊ", "ㄍㄨㄢˇ"]
        );
    }

    #[test]
    fn bu_and_yi() {
        assert_eq!(run("不要", &["ㄅㄨˋ", "ㄧㄠˋ"]), ["ㄅㄨˊ", "ㄧㄠˋ"]);
        assert_eq!(
            run("对不起", &["ㄉㄨㄟˋ", "ㄅㄨˋ", "ㄑㄧˇ"]),
            ["ㄉㄨㄟˋ", "ㄅㄨ˙", "ㄑㄧˇ"]
        );
        assert_eq!(run("一个", &["ㄧ", "ㄍㄜˋ"]), ["ㄧˊ", "ㄍㄜˋ"]);
        assert_eq!(run("一天", &["ㄧ", "ㄊㄧㄢ"]), ["ㄧˋ", "ㄊㄧㄢ"]);
        assert_eq!(
            run("看一看", &["ㄎㄢˋ", "ㄧ", "ㄎㄢˋ"]),
            ["ㄎㄢˋ", "ㄧ˙", "ㄎㄢˋ"]
        );
        assert_eq!(run("第一", &["ㄉㄧˋ", "ㄧ"]), ["ㄉㄧˋ", "ㄧ"]);
        assert_eq!(run("一二三", &["ㄧ", "ㄦˋ", "ㄙㄢ"]), ["ㄧ", "ㄦˋ", "ㄙㄢ"]);
        assert_eq!(
            run("一点儿", &["ㄧ", "ㄉㄧㄢˇ", "ㄦˊ"]),
            ["ㄧˋ", "ㄉㄧㄢˇ", "ㄦ˙"]
        );
        assert_eq!(run("女儿", &["ㄋㄩˇ", "ㄦˊ"]), ["ㄋㄩˇ", "ㄦˊ"]);
    }

    #[test]
    fn reference_index_errors_are_errors() {
        assert!(apply("不要", vec!["ㄅㄨˋ".into()]).is_ok());
        assert!(apply("对不起", vec!["ㄉㄨㄟˋ".into()]).is_err());
    }
}
