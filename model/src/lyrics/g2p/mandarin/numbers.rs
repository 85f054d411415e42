//! Arabic numbers to Chinese numerals, as `cn2an.transform(text, "an2cn")` (cn2an 0.5.23) does
//! before the Mandarin G2P: dates (`2024年` → `二零二四年`, month and day as numbers), fractions
//! (`1/2` → `二分之一`), percentages, `℃`, then every remaining number (`-3.14` → `负三点一四`).
//!
//! Like cn2an, digits are Unicode decimal digits (`\d`); full-width ones are first made ASCII
//! (its `full_angle_to_half_angle`), and a number it cannot convert (other scripts' digits, more
//! than 16 integer digits) is left as it was, to be stripped by the normalisation after it.

use std::sync::OnceLock;

use regex::{Captures, Regex};

const DIGITS: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
const UNITS: [&str; 16] = [
    "", "十", "百", "千", "万", "十", "百", "千", "亿", "十", "百", "千", "万", "十", "百", "千",
];

/// The value 0..=9 of an ASCII or full-width digit.
fn digit(c: char) -> Option<usize> {
    match c {
        '0'..='9' => Some(c as usize - '0' as usize),
        '０'..='９' => Some(c as usize - '０' as usize),
        _ => None,
    }
}

/// `An2Cn().an2cn(inputs, "low")` (or `"direct"`); `None` where cn2an raises.
fn an2cn(input: &str, direct: bool) -> Option<String> {
    if input.is_empty() {
        return None;
    }
    // full width to half width, then the validity check (digits, '.', '-')
    let mut s = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '.' | '-' => s.push(c),
            '．' => s.push('.'),
            '－' => s.push('-'),
            _ => s.push(char::from(b'0' + digit(c)? as u8)),
        }
    }
    let (sign, body) = match s.strip_prefix('-') {
        Some(rest) => ("负", rest),
        None => ("", s.as_str()),
    };
    if direct {
        let mut out = String::from(sign);
        for c in body.chars() {
            out.push_str(if c == '.' { "点" } else { DIGITS[digit(c)?] });
        }
        return Some(out);
    }
    let parts: Vec<&str> = body.split('.').collect();
    let out = match parts.as_slice() {
        [int] => integer(int)?,
        [int, dec] => integer(int)? + &decimal(dec)?,
        _ => return None,
    };
    Some(format!("{sign}{out}"))
}

/// `__integer_convert(…, "low")`.
fn integer(data: &str) -> Option<String> {
    if data.is_empty() || data.contains(['-', '.']) {
        return None; // int("") or int("-…") edge cases: cn2an raises or differs; keep the text
    }
    let trimmed = data.trim_start_matches('0');
    let digits: Vec<usize> = if trimmed.is_empty() {
        vec![0]
    } else {
        trimmed.chars().map(digit).collect::<Option<_>>()?
    };
    let n = digits.len();
    if n > UNITS.len() {
        return None;
    }
    let mut out = String::new();
    for (i, &d) in digits.iter().enumerate() {
        let unit = n - i - 1;
        if d != 0 {
            out.push_str(DIGITS[d]);
            out.push_str(UNITS[unit]);
        } else {
            if unit.is_multiple_of(4) {
                out.push_str(DIGITS[0]);
                out.push_str(UNITS[unit]);
            }
            if i > 0 && !out.ends_with('零') {
                out.push_str(DIGITS[0]);
            }
        }
    }
    let mut out = out
        .replace("零零", "零")
        .replace("零万", "万")
        .replace("零亿", "亿")
        .replace("亿万", "亿")
        .trim_matches('零')
        .to_string();
    if out.starts_with("一十") {
        out = out['一'.len_utf8()..].to_string();
    }
    if out.is_empty() {
        out = "零".into();
    }
    Some(out)
}

/// `__decimal_convert(…, "low")`: at most 16 digits, each read out.
fn decimal(data: &str) -> Option<String> {
    let mut out = String::new();
    if !data.is_empty() {
        out.push('点');
    }
    for c in data.chars().take(16) {
        out.push_str(DIGITS[digit(c)?]);
    }
    Some(out)
}

fn regexes() -> &'static [Regex; 7] {
    static RE: OnceLock<[Regex; 7]> = OnceLock::new();
    RE.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("valid regex");
        [
            re(r"(\d{2,4}年)?(\d{1,2}月)?(\d{1,2}日)?"),
            re(r"\d+/\d+"),
            re(r"-?(\d+\.)?\d+%"),
            re(r"\d+℃"),
            re(r"-?(\d+\.)?\d+"),
            re(r"\d+年"),
            re(r"\d+"),
        ]
    })
}

/// `cn2an.transform(text, "an2cn")`.
pub fn transform(text: &str) -> String {
    let [date, fraction, percent, celsius, number, year, digits] = regexes();
    let keep = |m: &str, out: Option<String>| out.unwrap_or_else(|| m.to_string());
    let text = date.replace_all(text, |c: &Captures| {
        let m = &c[0];
        if m.is_empty() {
            return String::new();
        }
        let s = year.replace_all(m, |y: &Captures| {
            let y = &y[0];
            let n = &y[..y.len() - '年'.len_utf8()];
            keep(n, an2cn(n, true)) + "年"
        });
        digits
            .replace_all(&s, |d: &Captures| keep(&d[0], an2cn(&d[0], false)))
            .into_owned()
    });
    let text = fraction.replace_all(&text, |c: &Captures| {
        let m = &c[0];
        let (a, b) = m.split_once('/').expect("the regex has a slash");
        match (an2cn(a, false), an2cn(b, false)) {
            (Some(a), Some(b)) => format!("{b}分之{a}"),
            _ => m.to_string(),
        }
    });
    let text = percent.replace_all(&text, |c: &Captures| {
        let m = &c[0];
        let n = &m[..m.len() - 1];
        an2cn(n, false).map_or_else(|| m.to_string(), |n| format!("百分之{n}"))
    });
    let text = celsius.replace_all(&text, |c: &Captures| {
        let m = &c[0];
        let n = &m[..m.len() - '℃'.len_utf8()];
        an2cn(n, false).map_or_else(|| m.to_string(), |n| format!("{n}摄氏度"))
    });
    number
        .replace_all(&text, |c: &Captures| keep(&c[0], an2cn(&c[0], false)))
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::transform;

    #[test]
    fn matches_cn2an() {
        // expected values printed by cn2an 0.5.23 `transform(s, "an2cn")`
        for (input, expected) in [
            ("2024年12月25日", "二零二四年十二月二十五日"),
            ("12345年", "一二三四五年"),
            ("5年", "五年"),
            ("1/2", "二分之一"),
            ("50%", "百分之五十"),
            ("-3.5%", "百分之负三点五"),
            ("30℃", "三十摄氏度"),
            ("3.14", "三点一四"),
            ("-5", "负五"),
            ("007", "七"),
            ("100000000", "一亿"),
            ("10001", "一万零一"),
            ("1000000000000000000", "1000000000000000000"),
            ("１２３", "一百二十三"),
            ("0.5", "零点五"),
            ("1.2.3", "一点二.三"),
            ("十2", "十二"),
            ("11月", "十一月"),
            ("第1名", "第一名"),
        ] {
            assert_eq!(transform(input), expected, "{input}");
        }
    }
}
