//! LRC parsing: `[mm:ss.xx] text` lines into timed lyric lines.
//!
//! The reference (`infer_utils.py::parse_lyrics`) slices fixed character positions and silently
//! drops anything that does not fit. Refrain parses the same files into the same timestamps, but
//! says why a line was skipped and accepts a few things the reference mangles (documented
//! deviations, none of which changes the result for a well-formed `[mm:ss.xx]` file):
//!
//! * `[mm:ss.xxx]` (3-digit fraction): parsed exactly; the reference truncates to two digits and
//!   feeds a stray `]` to the G2P, which drops it.
//! * `[mm:ss]` (no fraction) and several timestamps on one line (`[00:12.00][00:45.00]chorus`,
//!   the standard LRC repeat): each timestamp gets the text. The reference skips the first and
//!   phonemises the second timestamp as text.
//! * Metadata tags (`[ti:…]`, `[ar:…]`, `[offset:…]`, …), blank lines, lines without a timestamp
//!   and lines whose text is empty are skipped with a reason (the reference crashes on the last).
//! * A text with **no timestamps at all** is accepted as plain lyrics: its non-blank lines are
//!   spread evenly over the song (line `i` of `n` starts at `i·L/n` seconds).

use super::LyricsError;

/// Limits on what a request may send, checked before any work is done.
#[derive(Debug, Clone, Copy)]
pub struct LyricsLimits {
    /// Maximum size of the whole text in bytes.
    pub max_bytes: usize,
    /// Maximum number of lyric lines (after expanding repeated timestamps).
    pub max_lines: usize,
    /// Maximum characters in one line's text.
    pub max_line_chars: usize,
}

impl Default for LyricsLimits {
    fn default() -> Self {
        LyricsLimits {
            max_bytes: 64 * 1024,
            max_lines: 1000,
            max_line_chars: 500,
        }
    }
}

/// One lyric line with its start time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedLine {
    /// 1-based line number in the input, for messages.
    pub line_no: usize,
    /// Start time in seconds.
    pub seconds: f64,
    /// The text, trimmed.
    pub text: String,
}

/// A line that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line_no: usize,
    pub reason: String,
}

/// The result of parsing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedLrc {
    /// Timed lines in file order (repeated timestamps expanded in place).
    pub lines: Vec<TimedLine>,
    /// Lines that were skipped, with the reason.
    pub skipped: Vec<Skipped>,
    /// Plain (untimed) lines, present only when the text has no timestamps at all.
    pub plain: Vec<(usize, String)>,
}

/// Parses one `[mm:ss]`, `[mm:ss.x]`, `[mm:ss.xx]` or `[mm:ss.xxx]` tag at the start of `s`.
/// Returns the seconds and the rest of the string after `]`.
fn parse_timestamp(s: &str) -> Option<(f64, &str)> {
    let inner_end = s.find(']')?;
    let inner = s.strip_prefix('[')?.get(..inner_end - 1)?;
    let rest = &s[inner_end + 1..];
    let (mm, ss) = inner.split_once(':')?;
    if mm.is_empty() || mm.len() > 3 || !mm.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (whole, frac) = match ss.split_once(['.', ':']) {
        Some((w, f)) => (w, f),
        None => (ss, ""),
    };
    if whole.len() != 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 3
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || ss.len() > whole.len() && frac.is_empty()
    {
        return None;
    }
    let minutes: f64 = mm.parse().ok()?;
    let secs: f64 = format!("{whole}.{}", if frac.is_empty() { "0" } else { frac })
        .parse()
        .ok()?;
    if secs >= 60.0 {
        return None;
    }
    Some((minutes * 60.0 + secs, rest))
}

/// Whether `s` starts with a tag shaped like a timestamp (`[digits:digits…]`, only digits,
/// `:` and `.` inside) that [`parse_timestamp`] refused: an impossible time such as
/// `[00:75.00]` or a malformed one such as `[0:5]`. Such a line is an error, not lyrics.
fn bad_timestamp(s: &str) -> Option<&str> {
    let end = s.find(']')?;
    let inner = s.strip_prefix('[')?.get(..end - 1)?;
    let shaped = inner.starts_with(|c: char| c.is_ascii_digit())
        && inner.contains(':')
        && inner
            .chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '.');
    (shaped && parse_timestamp(s).is_none()).then(|| &s[..=end])
}

/// Whether a bracketed tag looks like LRC metadata (`[ti:Title]`, `[offset:+120]`, …).
fn is_metadata(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|r| r.split_once(':'))
        .is_some_and(|(key, _)| !key.is_empty() && key.chars().all(|c| c.is_ascii_alphabetic()))
        && line.ends_with(']')
}

/// Parses LRC (or plain) lyrics. Fails only on limits; everything else becomes a skip reason.
pub fn parse(text: &str, limits: &LyricsLimits) -> Result<ParsedLrc, LyricsError> {
    if text.len() > limits.max_bytes {
        return Err(LyricsError::TooLong(format!(
            "{} bytes, the limit is {}",
            text.len(),
            limits.max_bytes
        )));
    }
    let mut out = ParsedLrc::default();
    let mut untimed = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if line.is_empty() {
            continue;
        }
        let mut stamps = Vec::new();
        let mut rest = line;
        while let Some((t, r)) = parse_timestamp(rest) {
            stamps.push(t);
            rest = r.trim_start();
        }
        if let Some(tag) = bad_timestamp(rest) {
            return Err(LyricsError::BadLine {
                line: line_no,
                reason: format!(
                    "{tag} is not a valid timestamp: use [mm:ss.xx] with seconds below 60"
                ),
            });
        }
        if stamps.is_empty() {
            if is_metadata(line) {
                out.skipped.push(Skipped {
                    line_no,
                    reason: format!("metadata tag {line}"),
                });
            } else {
                untimed.push((line_no, line.to_string()));
            }
            continue;
        }
        let text = rest.trim();
        if text.is_empty() {
            out.skipped.push(Skipped {
                line_no,
                reason: "timestamp without text (instrumental marker)".into(),
            });
            continue;
        }
        check_line(line_no, text, limits)?;
        for seconds in stamps {
            out.lines.push(TimedLine {
                line_no,
                seconds,
                text: text.to_string(),
            });
        }
    }
    if out.lines.is_empty() {
        for (line_no, text) in &untimed {
            check_line(*line_no, text, limits)?;
        }
        out.plain = untimed;
    } else {
        out.skipped
            .extend(untimed.into_iter().map(|(line_no, _)| Skipped {
                line_no,
                reason: "no [mm:ss.xx] timestamp".into(),
            }));
        out.skipped.sort_by_key(|s| s.line_no);
    }
    let count = out.lines.len() + out.plain.len();
    if count > limits.max_lines {
        return Err(LyricsError::TooLong(format!(
            "{count} lines, the limit is {}",
            limits.max_lines
        )));
    }
    Ok(out)
}

fn check_line(line_no: usize, text: &str, limits: &LyricsLimits) -> Result<(), LyricsError> {
    let chars = text.chars().count();
    if chars > limits.max_line_chars {
        return Err(LyricsError::BadLine {
            line: line_no,
            reason: format!("{chars} characters, the limit is {}", limits.max_line_chars),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ParsedLrc {
        parse(text, &LyricsLimits::default()).unwrap()
    }

    #[test]
    fn impossible_timestamps_are_errors_naming_the_line() {
        let limits = LyricsLimits {
            max_bytes: 10_000,
            max_lines: 100,
            max_line_chars: 200,
        };
        for (text, line) in [
            ("[00:75.00] impossible", 1),
            ("[00:01.00] fine\n[01:60.00] no", 2),
            ("[00:01.00][0:5] short", 1),
            ("[00:01.00] ok\n\n[00:02.0000] too fine", 3),
        ] {
            match parse(text, &limits) {
                Err(LyricsError::BadLine { line: l, reason }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(reason.contains("not a valid timestamp"), "{reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        // Metadata and words in brackets stay what they were.
        assert!(parse("[ti:Song]\n[00:01.00] a", &limits).is_ok());
        assert!(parse("[Chorus] la la", &limits).is_ok());
    }

    #[test]
    fn timestamps_in_all_accepted_forms() {
        assert_eq!(parse_timestamp("[01:02.34]x"), Some((62.34, "x")));
        assert_eq!(parse_timestamp("[01:02.345]x"), Some((62.345, "x")));
        assert_eq!(parse_timestamp("[01:02.3]x"), Some((62.3, "x")));
        assert_eq!(parse_timestamp("[01:02]x"), Some((62.0, "x")));
        assert_eq!(parse_timestamp("[1:02:50]x"), Some((62.5, "x")));
        assert_eq!(parse_timestamp("[100:00.00]"), Some((6000.0, "")));
        for bad in [
            "[ti:Song]",
            "[01:2.00]",
            "[01:60.00]",
            "[aa:bb.cc]",
            "[01:02.3456]",
            "[01:02.]",
            "01:02.00",
            "[01:02.00",
            "[:02.00]",
            "[01:02.x0]",
            "[]",
            "[",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn skips_metadata_blank_and_textless_lines_with_reasons() {
        let r = p("[ti:My Song]\n[ar:Me]\n\n[00:01.00]hello world\n[00:05.00]\nno stamp here\n[00:07.50]  bye  \n");
        assert_eq!(
            r.lines,
            vec![
                TimedLine {
                    line_no: 4,
                    seconds: 1.0,
                    text: "hello world".into()
                },
                TimedLine {
                    line_no: 7,
                    seconds: 7.5,
                    text: "bye".into()
                },
            ]
        );
        let reasons: Vec<_> = r
            .skipped
            .iter()
            .map(|s| (s.line_no, s.reason.as_str()))
            .collect();
        assert_eq!(reasons[0], (1, "metadata tag [ti:My Song]"));
        assert_eq!(reasons[1], (2, "metadata tag [ar:Me]"));
        assert_eq!(
            reasons[2],
            (5, "timestamp without text (instrumental marker)")
        );
        assert_eq!(reasons[3], (6, "no [mm:ss.xx] timestamp"));
        assert!(r.plain.is_empty());
    }

    #[test]
    fn repeated_timestamps_expand_in_file_order() {
        let r = p("[00:30.00]later\n[00:10.00][00:50.00]chorus\r\n");
        let got: Vec<_> = r
            .lines
            .iter()
            .map(|l| (l.seconds, l.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![(30.0, "later"), (10.0, "chorus"), (50.0, "chorus")]
        );
    }

    #[test]
    fn plain_text_is_kept_as_untimed_lines() {
        let r = p("\u{feff}first line\n\n second line \n");
        assert!(r.lines.is_empty());
        assert_eq!(
            r.plain,
            vec![(1, "first line".into()), (3, "second line".into())]
        );
    }

    #[test]
    fn limits_are_errors() {
        let limits = LyricsLimits {
            max_bytes: 100,
            max_lines: 2,
            max_line_chars: 10,
        };
        let e = parse(&"x".repeat(101), &limits).unwrap_err().to_string();
        assert!(e.contains("101 bytes"), "{e}");
        let e = parse("[00:01.00]a\n[00:02.00]b\n[00:03.00]c", &limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 lines"), "{e}");
        let e = parse("[00:01.00]abcdefghijkl", &limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("12 characters"), "{e}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "[",
            "]",
            "[[[",
            "[0:",
            "[00:00.00",
            "\u{1F600}[00:01.00]\u{1F600}",
            "[00:01.00]]]",
        ] {
            let _ = parse(s, &LyricsLimits::default());
        }
    }
}
