//! English number normalisation: digits to words, exactly as DiffRhythm's `english.py` does it.
//!
//! The reference runs a fixed chain of regular expressions (`normalize_numbers`: thousands
//! commas, £, $, fractions, decimals, %, ordinals, plain numbers with a "year" reading for
//! 1001..=2999) whose replacements come from `inflect` 7.5.0's `number_to_words` and `ordinal`.
//! The model was trained on the phonemes of exactly those words, quirks included (a comma inside
//! "one million, two hundred …" becomes a pause token; "101st" is "one hundred and first" while
//! "101" is "one hundred one"), so this module reproduces `inflect`'s string building step by
//! step rather than spelling numbers its own way. Only the code paths `english.py` reaches are
//! ported: integer arguments (or digits with an ordinal suffix), `group` 0 or 2.

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Why a number could not be spelled. The reference raises (and the whole line fails) in the
/// same cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberError(pub String);

impl std::fmt::Display for NumberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

static COMMA_NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"([0-9][0-9,]+[0-9])"));
static DECIMAL_NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"([0-9]+\.[0-9]+)"));
static PERCENT_NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"([0-9.,]*[0-9]+%)"));
static POUNDS: LazyLock<Regex> = LazyLock::new(|| re(r"£([0-9,]*[0-9]+)"));
static DOLLARS: LazyLock<Regex> = LazyLock::new(|| re(r"\$([0-9.,]*[0-9]+)"));
static FRACTION: LazyLock<Regex> = LazyLock::new(|| re(r"([0-9]+)/([0-9]+)"));
static ORDINAL: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]+(st|nd|rd|th)"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"[0-9]+"));

// inflect's own helpers (only ASCII spaces occur in the strings they see here)
static WHITESPACES_COMMA: LazyLock<Regex> = LazyLock::new(|| re(r"\s+,"));
static COMMA_WORD: LazyLock<Regex> = LazyLock::new(|| re(r", (\S+)\s+\z"));
static WHITESPACES: LazyLock<Regex> = LazyLock::new(|| re(r"\s+"));

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("static regex")
}

/// Python's `int(str)` refuses decimal strings longer than this (`sys.int_info`, 3.11+).
const PY_INT_MAX_STR_DIGITS: usize = 4300;

/// A non-negative integer held as its canonical decimal digits (Python's `str(int(s))`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Int(String);

impl Int {
    /// `int(s)` for a string of ASCII digits; errors where Python raises `ValueError`.
    fn parse(s: &str) -> Result<Int, NumberError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NumberError(format!(
                "invalid literal for int() with base 10: {s:?}"
            )));
        }
        if s.len() > PY_INT_MAX_STR_DIGITS {
            return Err(NumberError(format!(
                "a number of {} digits exceeds the limit of {PY_INT_MAX_STR_DIGITS}",
                s.len()
            )));
        }
        let digits = s.trim_start_matches('0');
        Ok(Int(if digits.is_empty() { "0" } else { digits }.to_string()))
    }

    fn is_zero(&self) -> bool {
        self.0 == "0"
    }

    fn is(&self, n: u64) -> bool {
        self.small() == Some(n)
    }

    /// The value if it fits in a u64.
    fn small(&self) -> Option<u64> {
        self.0.parse().ok()
    }
}

/// `normalize_numbers` of `english.py`.
pub fn normalize_numbers(text: &str) -> Result<String, NumberError> {
    let text = COMMA_NUMBER.replace_all(text, |c: &Captures| c[1].replace(',', ""));
    let text = POUNDS.replace_all(&text, "${1} pounds");
    let text = try_replace_all(&DOLLARS, &text, |c| expand_dollars(&c[1]))?;
    let text = try_replace_all(&FRACTION, &text, |c| {
        fraction_to_words(&Int::parse(&c[1])?, &Int::parse(&c[2])?)
    })?;
    let text = DECIMAL_NUMBER.replace_all(&text, |c: &Captures| c[1].replace('.', " point "));
    let text = PERCENT_NUMBER.replace_all(&text, |c: &Captures| c[1].replace('%', " percent "));
    let text = try_replace_all(&ORDINAL, &text, |c| {
        Ok(format!(" {} ", number_to_words(&c[0], 0, "and", "zero")?))
    })?;
    try_replace_all(&NUMBER, &text, |c| expand_number(&Int::parse(&c[0])?))
}

/// `Regex::replace_all` with a fallible replacement.
fn try_replace_all(
    regex: &Regex,
    text: &str,
    mut f: impl FnMut(&Captures) -> Result<String, NumberError>,
) -> Result<String, NumberError> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in regex.captures_iter(text) {
        let m = caps.get(0).expect("group 0");
        out.push_str(&text[last..m.start()]);
        out.push_str(&f(&caps)?);
        last = m.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

fn expand_dollars(amount: &str) -> Result<String, NumberError> {
    let parts: Vec<&str> = amount.split('.').collect();
    if parts.len() > 2 {
        return Ok(format!(" {amount} dollars "));
    }
    let zero = Int("0".to_string());
    let dollars = match parts[0] {
        "" => zero.clone(),
        p => Int::parse(p)?,
    };
    let cents = match parts.get(1) {
        Some(p) if !p.is_empty() => Int::parse(p)?,
        _ => zero,
    };
    let unit = |n: &Int, one: &str, many: &str| if n.is(1) { one } else { many }.to_string();
    Ok(match (dollars.is_zero(), cents.is_zero()) {
        (false, false) => format!(
            " {} {}, {} {} ",
            dollars.0,
            unit(&dollars, "dollar", "dollars"),
            cents.0,
            unit(&cents, "cent", "cents")
        ),
        (false, true) => format!(" {} {} ", dollars.0, unit(&dollars, "dollar", "dollars")),
        (true, false) => format!(" {} {} ", cents.0, unit(&cents, "cent", "cents")),
        (true, true) => " zero dollars ".to_string(),
    })
}

fn fraction_to_words(numerator: &Int, denominator: &Int) -> Result<String, NumberError> {
    if numerator.is(1) && denominator.is(2) {
        return Ok(" one half ".to_string());
    }
    if numerator.is(1) && denominator.is(4) {
        return Ok(" one quarter ".to_string());
    }
    let num = number_to_words(&numerator.0, 0, "and", "zero")?;
    if denominator.is(2) {
        return Ok(format!(" {num} halves "));
    }
    if denominator.is(4) {
        return Ok(format!(" {num} quarters "));
    }
    let den = number_to_words(&denominator.0, 0, "and", "zero")?;
    // inflect's ordinal() of a word (not a digit string) is _sub_ord
    Ok(format!(" {num} {} ", sub_ord(&den)))
}

fn expand_number(num: &Int) -> Result<String, NumberError> {
    match num.small() {
        Some(n) if n > 1000 && n < 3000 => {
            if n == 2000 {
                Ok(" two thousand ".to_string())
            } else if n > 2000 && n < 2010 {
                Ok(format!(
                    " two thousand {} ",
                    number_to_words(&(n % 100).to_string(), 0, "and", "zero")?
                ))
            } else if n % 100 == 0 {
                Ok(format!(
                    " {} hundred ",
                    number_to_words(&(n / 100).to_string(), 0, "and", "zero")?
                ))
            } else {
                let words = number_to_words(&num.0, 2, "", "oh")?;
                Ok(format!(" {} ", words.replace(", ", " ")))
            }
        }
        _ => Ok(format!(" {} ", number_to_words(&num.0, 0, "", "zero")?)),
    }
}

const UNIT: [&str; 10] = [
    "", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
const TEEN: [&str; 10] = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TEN: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];
const MILL: [&str; 12] = [
    " ",
    " thousand",
    " million",
    " billion",
    " trillion",
    " quadrillion",
    " quintillion",
    " sextillion",
    " septillion",
    " octillion",
    " nonillion",
    " decillion",
];
const NTH_SUFF: [&str; 4] = ["th", "st", "nd", "rd"];
/// inflect's `ordinal` table, in its order (the regex alternation order).
const ORDINAL_SUFF: [(&str, &str); 8] = [
    ("ty", "tieth"),
    ("one", "first"),
    ("two", "second"),
    ("three", "third"),
    ("five", "fifth"),
    ("eight", "eighth"),
    ("nine", "ninth"),
    ("twelve", "twelfth"),
];

fn mill(index: usize) -> Result<&'static str, NumberError> {
    MILL.get(index).copied().ok_or_else(|| {
        NumberError("number out of range: inflect spells at most 36 digits".to_string())
    })
}

/// inflect's `_sub_ord`: "twenty" → "twentieth", "one" → "first", "seven" → "seventh".
fn sub_ord(words: &str) -> String {
    // `(ty|one|…)\Z`: the leftmost match that reaches the end, i.e. the longest suffix
    let best = ORDINAL_SUFF
        .iter()
        .filter(|(suffix, _)| words.ends_with(suffix))
        .max_by_key(|(suffix, _)| suffix.len());
    match best {
        Some((suffix, ordinal)) => format!("{}{ordinal}", &words[..words.len() - suffix.len()]),
        None => format!("{words}th"),
    }
}

fn digit(b: u8) -> usize {
    usize::from(b - b'0')
}

/// inflect's `tenfn(tens, units, mindex)`.
fn tenfn(tens: usize, units: usize, mindex: usize) -> Result<String, NumberError> {
    if tens != 1 {
        let hyphen = if tens != 0 && units != 0 { "-" } else { "" };
        Ok(format!(
            "{}{hyphen}{}{}",
            TEN[tens],
            UNIT[units],
            mill(mindex)?
        ))
    } else {
        Ok(format!("{}{}", TEEN[units], mill(mindex)?))
    }
}

/// inflect's `hundfn(hundreds, tens, units, mindex)`.
fn hundfn(
    hundreds: usize,
    tens: usize,
    units: usize,
    mindex: usize,
    andword: &str,
) -> Result<String, NumberError> {
    if hundreds != 0 {
        let and = if tens != 0 || units != 0 {
            format!(" {andword} ")
        } else {
            String::new()
        };
        return Ok(format!(
            "{} hundred{and}{}{}, ",
            UNIT[hundreds],
            tenfn(tens, units, 0)?,
            mill(mindex)?
        ));
    }
    if tens != 0 || units != 0 {
        return Ok(format!("{}{}, ", tenfn(tens, units, 0)?, mill(mindex)?));
    }
    Ok(String::new())
}

/// inflect's `enword(num, group)` for group 0 and 2; `num` is a string of ASCII digits.
fn enword(num: &str, group: u8, andword: &str, zero: &str) -> Result<String, NumberError> {
    if group == 2 {
        // TWO_DIGITS.sub(group2sub) then DIGIT_GROUP.sub(group1bsub, count=1)
        let bytes = num.as_bytes();
        let mut out = String::new();
        let mut pairs = bytes.chunks_exact(2);
        for pair in pairs.by_ref() {
            let (tens, units) = (digit(pair[0]), digit(pair[1]));
            if tens != 0 {
                out += &tenfn(tens, units, 0)?;
                out += ", ";
            } else if units != 0 {
                out += &format!(" {zero} {}, ", UNIT[units]);
            } else {
                out += &format!(" {zero} {zero}, ");
            }
        }
        if let [last] = pairs.remainder() {
            match digit(*last) {
                0 => out += &format!(" {zero}, "),
                u => out += &format!("{}, ", UNIT[u]),
            }
        }
        return Ok(out);
    }
    let value = Int::parse(num)?;
    if value.is_zero() {
        return Ok(zero.to_string());
    }
    if value.is(1) {
        return Ok("one".to_string());
    }
    // the digits are consumed three at a time from the right, each group's words replacing it
    let digits = value.0.as_bytes();
    let mut words = String::new();
    let mut end = digits.len();
    let mut mill_count = 0;
    while end >= 3 {
        let g = &digits[end - 3..end];
        words = hundfn(digit(g[0]), digit(g[1]), digit(g[2]), mill_count, andword)? + &words;
        mill_count += 1;
        end -= 3;
    }
    match &digits[..end] {
        [t, u] => words = format!("{}, ", tenfn(digit(*t), digit(*u), mill_count)?) + &words,
        [u] => words = format!("{}{}, ", UNIT[digit(*u)], mill(mill_count)?) + &words,
        _ => {}
    }
    Ok(words)
}

/// inflect 7.5.0 `engine.number_to_words(num, group=group, andword=andword, zero=zero)` for
/// `num` a string of digits, optionally ending in an ordinal suffix (`"21st"`), as
/// `english.py` calls it (comma ",", one "one", decimal "point", no threshold, no wantlist).
pub fn number_to_words(
    num: &str,
    group: u8,
    andword: &str,
    zero: &str,
) -> Result<String, NumberError> {
    let ordinal = num.len() >= 2 && NTH_SUFF.contains(&&num[num.len() - 2..]);
    let digits = if ordinal { &num[..num.len() - 2] } else { num };
    // _handle_chunk: strip non-digits (none here), "" reads as "0"
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut chunk = enword(digits, group, andword, zero)?;
    if chunk.ends_with(", ") {
        chunk.truncate(chunk.len() - 2);
    }
    let mut chunk = WHITESPACES_COMMA.replace_all(&chunk, ",").into_owned();
    if group == 0 {
        chunk = COMMA_WORD
            .replace_all(&chunk, format!(" {andword} ${{1}}").as_str())
            .into_owned();
    }
    let chunk = WHITESPACES.replace_all(&chunk, " ");
    let chunk = chunk.trim_matches(|c: char| c.is_whitespace());
    let mut numchunks: Vec<String> = chunk.split(", ").map(str::to_string).collect();
    if ordinal {
        if let Some(last) = numchunks.last_mut() {
            *last = sub_ord(last);
        }
    }
    // group > 0 joins with ", "; group 0 renders the same here (no decimal point)
    Ok(numchunks.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: &str) -> String {
        number_to_words(n, 0, "", "zero").unwrap()
    }

    #[test]
    fn inflect_cardinals() {
        // all expected strings below were printed by inflect 7.5.0 / english.py
        assert_eq!(words("0"), "zero");
        assert_eq!(words("1"), "one");
        assert_eq!(words("7"), "seven");
        assert_eq!(words("10"), "ten");
        assert_eq!(words("19"), "nineteen");
        assert_eq!(words("20"), "twenty");
        assert_eq!(words("99"), "ninety-nine");
        assert_eq!(words("100"), "one hundred");
        assert_eq!(words("101"), "one hundred one");
        assert_eq!(words("365"), "three hundred sixty-five");
        assert_eq!(words("1000"), "one thousand");
        assert_eq!(words("1002"), "one thousand two");
        assert_eq!(words("1100"), "one thousand, one hundred");
        assert_eq!(words("1000001"), "one million one");
        assert_eq!(
            words("123456789"),
            "one hundred twenty-three million, four hundred fifty-six thousand, \
             seven hundred eighty-nine"
        );
        assert_eq!(words("3000000000000"), "three trillion");
        assert_eq!(
            number_to_words("1002", 0, "and", "zero").unwrap(),
            "one thousand and two"
        );
        assert_eq!(
            number_to_words("101", 0, "and", "zero").unwrap(),
            "one hundred and one"
        );
    }

    #[test]
    fn inflect_ordinals() {
        let ord = |n: &str| number_to_words(n, 0, "and", "zero").unwrap();
        assert_eq!(ord("1st"), "first");
        assert_eq!(ord("2nd"), "second");
        assert_eq!(ord("3rd"), "third");
        assert_eq!(ord("0th"), "zeroth");
        assert_eq!(ord("11th"), "eleventh");
        assert_eq!(ord("12th"), "twelfth");
        assert_eq!(ord("20th"), "twentieth");
        assert_eq!(ord("21st"), "twenty-first");
        assert_eq!(ord("100th"), "one hundredth");
        assert_eq!(ord("101st"), "one hundred and first");
        assert_eq!(ord("1000th"), "one thousandth");
        assert_eq!(ord("007th"), "seventh");
        assert_eq!(ord("2st"), "second");
    }

    #[test]
    fn inflect_year_grouping() {
        let year = |n: &str| number_to_words(n, 2, "", "oh").unwrap();
        assert_eq!(year("1999"), "nineteen, ninety-nine");
        assert_eq!(year("1905"), "nineteen, oh five");
        assert_eq!(year("2024"), "twenty, twenty-four");
        assert_eq!(year("1810"), "eighteen, ten");
        assert_eq!(year("123"), "twelve, three");
        assert_eq!(year("100"), "ten, oh");
    }

    #[test]
    fn out_of_range() {
        assert!(number_to_words(&"9".repeat(36), 0, "", "zero").is_ok());
        let err = number_to_words(&format!("1{}", "0".repeat(36)), 0, "", "zero").unwrap_err();
        assert!(err.0.contains("out of range"), "{err}");
        assert!(normalize_numbers(&"1".repeat(37)).is_err());
        assert!(normalize_numbers(&"1".repeat(4301)).is_err());
        // leading zeros do not count
        assert_eq!(
            normalize_numbers(&format!("{}5", "0".repeat(40))).unwrap(),
            " five "
        );
    }

    #[test]
    fn normalise() {
        let n = |s: &str| normalize_numbers(s).unwrap();
        assert_eq!(n("99 problems"), " ninety-nine  problems");
        assert_eq!(n("in 1999"), "in  nineteen ninety-nine ");
        assert_eq!(n("2000"), " two thousand ");
        assert_eq!(n("2005"), " two thousand five ");
        assert_eq!(n("1900"), " nineteen hundred ");
        assert_eq!(n("1000 3000"), " one thousand   three thousand ");
        assert_eq!(n("1,000 people"), " one thousand  people");
        assert_eq!(n("$5"), "  five  dollars ");
        assert_eq!(n("$1"), "  one  dollar ");
        assert_eq!(n("$3.50"), "  three  dollars,  fifty  cents ");
        assert_eq!(n("$0.01"), "  one  cent ");
        assert_eq!(n("$0"), " zero dollars ");
        assert_eq!(n("$1.2.3"), "  one  point  two . three  dollars ");
        assert_eq!(n("£20"), " twenty  pounds");
        assert_eq!(n("3.14"), " three  point  fourteen ");
        assert_eq!(n("50%"), " fifty  percent ");
        assert_eq!(
            n("1/2 3/4 2/4 1/3 24/7"),
            " one half   three quarters   two quarters   one third   twenty-four seventh "
        );
        assert_eq!(n("the 21st"), "the  twenty-first ");
        assert_eq!(n("4ever"), " four ever");
        assert_eq!(n("1ST"), " one ST");
        assert_eq!(n("no digits"), "no digits");
    }

    #[test]
    fn malformed_money_fails_like_the_reference() {
        // Python: int(",5") raises ValueError
        assert!(normalize_numbers("$,5").is_err());
    }
}
