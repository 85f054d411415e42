//! Automatic timing of structured lyrics: text with `[Verse]` / `[Chorus]`-style section markers
//! and no timestamps becomes LRC, so any front end can take lyrics the way songwriting tools
//! write them. DiffRhythm itself needs a start time for every line; this is the one place that
//! invents them.
//!
//! The rule, over a window `[start, end)` of the song (the whole song for a new one, the span
//! being regenerated for an edit):
//!
//! * **Sections.** A line that is only a bracketed name (`[Verse 1]`, `[Chorus]`, `[Bridge]`)
//!   starts a section; with no markers at all, blank lines separate sections. Lines before the
//!   first marker form a section of their own.
//! * **Instrumental sections.** A section without lines whose name contains `intro`, `outro`,
//!   `instrumental`, `break`, `solo` or `interlude` is a rest of two breaks; other empty sections
//!   are dropped.
//! * **Lead-in and tail.** A whole song keeps an instrumental intro of 10 % of its length
//!   (between 5 and 15 s) and a tail of 5 % (between 3 and 10 s) where nothing starts. A span
//!   keeps 5 % of its length (at most 1 s) at each end.
//! * **Breaks.** Between two sections there is a break of 4 % of the window (between 1 and 6 s)
//!   where nothing starts.
//! * **Lines.** The time left is shared equally by the lines, in order; each line starts at the
//!   beginning of its share (centisecond precision). A share below [`MIN_LINE_SECONDS`] is
//!   refused: the song is too short for that many lines.
//!
//! Text that already has a timestamp is not touched; empty text stays empty (an instrumental).

use super::LyricsError;

/// The shortest share of time one line may get, in seconds.
pub const MIN_LINE_SECONDS: f64 = 1.0;

/// Names of sections that are instrumental when they have no lines.
const INSTRUMENTAL: [&str; 6] = [
    "intro",
    "outro",
    "instrumental",
    "break",
    "solo",
    "interlude",
];

/// Where lines may be placed, and the rests at its ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: f64,
    pub end: f64,
    /// Seconds after `start` before the first line.
    pub lead_in: f64,
    /// Seconds before `end` after which no line starts.
    pub tail: f64,
}

impl Window {
    /// A whole song of `seconds`: intro 10 % (5–15 s), tail 5 % (3–10 s).
    pub fn song(seconds: f64) -> Window {
        Window {
            start: 0.0,
            end: seconds,
            lead_in: (0.10 * seconds).clamp(5.0, 15.0),
            tail: (0.05 * seconds).clamp(3.0, 10.0),
        }
    }

    /// A span `[start, end)` of a song being edited: 5 % (at most 1 s) at each end.
    pub fn span(start: f64, end: f64) -> Window {
        let rest = (0.05 * (end - start)).clamp(0.0, 1.0);
        Window {
            start,
            end,
            lead_in: rest,
            tail: rest,
        }
    }
}

/// One section: its name (empty when unmarked) and its lines.
#[derive(Debug)]
struct Section {
    name: String,
    lines: Vec<String>,
}

impl Section {
    fn instrumental(&self) -> bool {
        let name = self.name.to_ascii_lowercase();
        self.lines.is_empty() && INSTRUMENTAL.iter().any(|w| name.contains(w))
    }
}

/// A marker line's name: `[Verse 1]` → `Verse 1`. Timestamps and LRC metadata are not markers.
fn marker(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let looks_timed = inner.starts_with(|c: char| c.is_ascii_digit()) && inner.contains(':');
    (!inner.contains(['[', ']']) && !looks_timed).then(|| inner.trim())
}

/// Whether a line starts with an LRC timestamp (`[mm:ss…]`).
fn timed(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(inner, _)| {
            inner.starts_with(|c: char| c.is_ascii_digit())
                && inner.contains(':')
                && inner
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ':' || c == '.')
        })
}

fn sections(text: &str) -> Vec<Section> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}'))
        .collect();
    let marked = lines.iter().any(|l| marker(l).is_some());
    let mut out = vec![Section {
        name: String::new(),
        lines: Vec::new(),
    }];
    for line in lines {
        let current = out.last_mut().expect("never empty");
        match marker(line) {
            Some(name) => out.push(Section {
                name: name.to_string(),
                lines: Vec::new(),
            }),
            None if line.is_empty() => {
                if !marked && !current.lines.is_empty() {
                    out.push(Section {
                        name: String::new(),
                        lines: Vec::new(),
                    });
                }
            }
            None => current.lines.push(line.to_string()),
        }
    }
    out.retain(|s| !s.lines.is_empty() || s.instrumental());
    out
}

/// `[mm:ss.xx]` of `seconds`.
fn stamp(seconds: f64) -> String {
    let cs = (seconds * 100.0).floor().max(0.0) as u64;
    format!("[{:02}:{:02}.{:02}]", cs / 6000, cs / 100 % 60, cs % 100)
}

/// Times untimed, possibly sectioned lyrics within `window` by the rule of this module and
/// returns them as LRC; `Ok(None)` when `text` has a timestamp already or nothing to sing.
pub fn time_lyrics(text: &str, window: Window) -> Result<Option<String>, LyricsError> {
    if text.lines().any(|l| timed(l.trim_start())) {
        return Ok(None);
    }
    let sections = sections(text);
    let lines: usize = sections.iter().map(|s| s.lines.len()).sum();
    if lines == 0 {
        return Ok(None);
    }
    let length = window.end - window.start;
    let brk = (0.04 * length).clamp(1.0, 6.0);
    let gaps = sections.len().saturating_sub(1) as f64 * brk
        + sections.iter().filter(|s| s.instrumental()).count() as f64 * 2.0 * brk;
    let singing = length - window.lead_in - window.tail - gaps;
    let share = singing / lines as f64;
    if share.is_nan() || share < MIN_LINE_SECONDS {
        return Err(LyricsError::TooLong(format!(
            "{lines} lines in {} sections do not fit {length:.0} s: each line needs at least \
             {MIN_LINE_SECONDS} s after the intro and the breaks; shorten the lyrics, make the \
             song longer or give timestamps",
            sections.len()
        )));
    }
    let mut at = window.start + window.lead_in;
    let mut out = String::new();
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            at += brk;
        }
        if section.instrumental() {
            at += 2.0 * brk;
        }
        for line in &section.lines {
            out.push_str(&stamp(at));
            out.push(' ');
            out.push_str(line);
            out.push('\n');
            at += share;
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(lrc: &str) -> Vec<(f64, String)> {
        lrc.lines()
            .map(|l| {
                let (t, text) = l[1..].split_once("] ").unwrap();
                let (m, s) = t.split_once(':').unwrap();
                (
                    m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap(),
                    text.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn sections_get_an_intro_breaks_and_equal_shares() {
        let text = "[Verse]\none two\nthree four\n\n[Chorus]\nla la\nla la la\n";
        let lrc = time_lyrics(text, Window::song(95.0)).unwrap().unwrap();
        let s = starts(&lrc);
        assert_eq!(s.len(), 4);
        // Intro 9.5 s; break 3.8 s; tail 4.75 s; share (95 − 9.5 − 4.75 − 3.8) / 4.
        let share = (95.0 - 9.5 - 4.75 - 3.8) / 4.0;
        let want = [
            9.5,
            9.5 + share,
            9.5 + 2.0 * share + 3.8,
            9.5 + 3.0 * share + 3.8,
        ];
        for ((got, _), want) in s.iter().zip(want) {
            assert!((got - want).abs() < 0.011, "{got} vs {want}\n{lrc}");
        }
        assert_eq!(s[2].1, "la la");
        let last = s.last().unwrap().0;
        assert!(last + share <= 95.0 - 4.75 + 0.01);
    }

    #[test]
    fn instrumental_sections_rest_and_other_empty_ones_vanish() {
        let plain = time_lyrics("[Verse]\na\n[Chorus]\nb\n", Window::song(120.0))
            .unwrap()
            .unwrap();
        let rest = time_lyrics(
            "[Verse]\na\n[Guitar Solo]\n[Chorus]\nb\n[Empty]\n",
            Window::song(120.0),
        )
        .unwrap()
        .unwrap();
        let (p, r) = (starts(&plain), starts(&rest));
        // One more section (the solo) costs a break and the solo's two breaks: the first line
        // keeps its start, the second moves by three breaks less the shares' shrinking.
        assert_eq!(p[0].0, r[0].0);
        assert!(r[1].0 > p[1].0, "{plain}\n{rest}");
    }

    #[test]
    fn blank_lines_separate_unmarked_sections() {
        let lrc = time_lyrics("a\nb\n\nc\n", Window::song(95.0))
            .unwrap()
            .unwrap();
        let s = starts(&lrc);
        let share = (95.0 - 9.5 - 4.75 - 3.8) / 3.0;
        assert!((s[2].0 - (9.5 + 2.0 * share + 3.8)).abs() < 0.011, "{lrc}");
    }

    #[test]
    fn spans_time_lines_inside_the_span() {
        let lrc = time_lyrics(
            "[Verse]\nnew words here\nand more\n",
            Window::span(30.0, 50.0),
        )
        .unwrap()
        .unwrap();
        let s = starts(&lrc);
        assert!((s[0].0 - 31.0).abs() < 0.011, "{lrc}");
        assert!((s[1].0 - 40.0).abs() < 0.011, "{lrc}");
    }

    #[test]
    fn timed_and_empty_text_are_left_alone_and_overfull_is_refused() {
        assert_eq!(
            time_lyrics("[00:10.00] hello\n", Window::song(95.0)).unwrap(),
            None
        );
        assert_eq!(
            time_lyrics("[Verse]\n\n", Window::song(95.0)).unwrap(),
            None
        );
        let many = "la\n".repeat(90);
        let e = time_lyrics(&many, Window::song(95.0)).unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
        // A metadata tag is an empty (dropped) section; timestamps are not markers.
        assert!(marker("[ti:Song]").is_some() && marker("[00:10.00]").is_none());
        assert!(timed("[01:02.50] x") && !timed("[Verse 1]"));
    }
}
