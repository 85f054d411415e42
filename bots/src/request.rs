//! What a chat message asks for, independent of the platform: `/song [LENGTH] <style>` with
//! the lyrics on the following lines (LRC, or plain lines that are spread evenly over the
//! song), and the `client_data` a bot keeps on each job so that it finds the chat message again
//! after a restart.

use std::collections::BTreeMap;

/// A song request read from a chat.
#[derive(Debug, Clone, PartialEq)]
pub struct SongRequest {
    pub style: String,
    pub length_seconds: u32,
    /// LRC lyrics (timed here when the user gave plain lines).
    pub lyrics: String,
}

/// Why a request cannot be made into a song.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("give a style after the command, e.g. /song bright acoustic pop")]
    NoStyle,
    #[error("the length must be 95, or 96 to 285 seconds, not {0}")]
    Length(u32),
}

/// Reads `/song`'s argument: the first line is `[LENGTH] style`, the rest the lyrics (unless
/// `lyrics` comes from elsewhere, e.g. a replied-to `.lrc` file). With a reference recording
/// (`has_reference`) the style text is optional: it only names the song.
pub fn parse_song(
    argument: &str,
    lyrics_file: Option<&str>,
    default_length: u32,
    has_reference: bool,
) -> Result<SongRequest, RequestError> {
    let mut lines = argument.lines();
    let first = lines.next().unwrap_or("").trim();
    let rest: Vec<&str> = lines.collect();
    let (length, style) = match first.split_once(char::is_whitespace) {
        Some((n, style)) if n.parse::<u32>().is_ok() => (n.parse().unwrap_or(0), style.trim()),
        _ if first.parse::<u32>().is_ok() => (first.parse().unwrap_or(0), ""),
        _ => (default_length, first),
    };
    let style = match style {
        "" if has_reference => "your reference",
        "" => return Err(RequestError::NoStyle),
        style => style,
    };
    if !(length == 95 || (96..=285).contains(&length)) {
        return Err(RequestError::Length(length));
    }
    let text = match lyrics_file {
        Some(file) => file.to_string(),
        None => rest.join("\n"),
    };
    Ok(SongRequest {
        style: style.to_string(),
        length_seconds: length,
        lyrics: timed(&text, length),
    })
}

/// Whether a line starts with an LRC time tag `[mm:ss…]`.
fn has_time_tag(line: &str) -> bool {
    let Some(rest) = line.trim_start().strip_prefix('[') else {
        return false;
    };
    let tag: String = rest.chars().take_while(|c| *c != ']').collect();
    tag.split_once(':').is_some_and(|(m, s)| {
        !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()) && s.parse::<f64>().is_ok()
    })
}

/// The lyrics as LRC: unchanged when any line is timed, else the non-empty lines spread
/// evenly from 10 s to 10 s before the end (as the web page's "Spread lines over the song").
pub fn timed(text: &str, length: u32) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() || lines.iter().any(|l| has_time_tag(l)) {
        return text.trim().to_string();
    }
    let start = 10.0;
    let span = (length as f64 - 20.0).max(1.0);
    let step = span / lines.len() as f64;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let t = start + step * i as f64;
            let minutes = (t / 60.0).floor();
            format!("[{:02}:{:05.2}] {line}", minutes as u32, t - minutes * 60.0)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first lyric line without its time tag, as a song title.
pub fn title(lyrics: &str, style: &str) -> String {
    let line = lyrics
        .lines()
        .map(|l| {
            let l = l.trim();
            match l.strip_prefix('[').and_then(|r| r.split_once(']')) {
                Some((_, text)) => text.trim(),
                None => l,
            }
        })
        .find(|l| !l.is_empty())
        .unwrap_or(style);
    line.chars().take(60).collect()
}

/// `client_data` of a bot's job: `<platform>;key=value;…`, readable by [`ClientData::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    pub platform: String,
    pub fields: BTreeMap<String, String>,
}

impl ClientData {
    pub fn new(platform: &str) -> ClientData {
        ClientData {
            platform: platform.to_string(),
            fields: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl ToString) -> ClientData {
        self.fields.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.fields.get(key)?.parse().ok()
    }

    /// The text form; `%`, `;` and `=` in values are percent-escaped (keys are plain words).
    pub fn encode(&self) -> String {
        let mut out = format!("refrain-bot:{}", self.platform);
        for (k, v) in &self.fields {
            let v = v
                .replace('%', "%25")
                .replace(';', "%3B")
                .replace('=', "%3D");
            out.push_str(&format!(";{k}={v}"));
        }
        out
    }

    /// Reads [`ClientData::encode`]'s form; `None` for anything else.
    pub fn parse(text: &str) -> Option<ClientData> {
        let mut parts = text.split(';');
        let platform = parts.next()?.strip_prefix("refrain-bot:")?;
        let mut data = ClientData::new(platform);
        for part in parts {
            let (k, v) = part.split_once('=')?;
            let v = v
                .replace("%3B", ";")
                .replace("%3D", "=")
                .replace("%25", "%");
            data.fields.insert(k.to_string(), v);
        }
        Some(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn song_commands() {
        let r = parse_song(
            "bright pop\n[00:10.00] hello\n[00:20.00] world",
            None,
            95,
            false,
        )
        .unwrap();
        assert_eq!(r.style, "bright pop");
        assert_eq!(r.length_seconds, 95);
        assert_eq!(r.lyrics, "[00:10.00] hello\n[00:20.00] world");
        let r = parse_song("120 dark synthwave", Some("[00:05.00] hi"), 95, false).unwrap();
        assert_eq!(
            (r.length_seconds, r.style.as_str()),
            (120, "dark synthwave")
        );
        assert_eq!(r.lyrics, "[00:05.00] hi");
        assert_eq!(parse_song("", None, 95, false), Err(RequestError::NoStyle));
        assert_eq!(
            parse_song("120", None, 95, false),
            Err(RequestError::NoStyle)
        );
        assert_eq!(
            parse_song("90 jazz", None, 95, false),
            Err(RequestError::Length(90))
        );
    }

    #[test]
    fn a_reference_recording_makes_the_style_optional() {
        let r = parse_song("120\n[00:05.00] hi", None, 95, true).unwrap();
        assert_eq!(
            (r.length_seconds, r.style.as_str()),
            (120, "your reference")
        );
    }

    #[test]
    fn plain_lines_are_spread_over_the_song() {
        let lrc = timed("one\n\ntwo\nthree\nfour", 95);
        assert_eq!(
            lrc,
            "[00:10.00] one\n[00:28.75] two\n[00:47.50] three\n[01:06.25] four"
        );
        assert_eq!(
            timed("[01:00.00] kept\nplain", 95),
            "[01:00.00] kept\nplain"
        );
        assert_eq!(timed("", 95), "");
        assert_eq!(title(&lrc, "style"), "one");
        assert_eq!(title("", "style"), "style");
    }

    #[test]
    fn client_data_round_trips() {
        let d = ClientData::new("telegram")
            .with("chat", -100123)
            .with("msg", 7);
        let text = d.encode();
        assert_eq!(text, "refrain-bot:telegram;chat=-100123;msg=7");
        let back = ClientData::parse(&text).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.get::<i64>("chat"), Some(-100123));
        assert_eq!(ClientData::parse("something else"), None);
        // Tokens may hold the separators.
        let d = ClientData::new("discord").with("tok", "a=b;c%3D");
        assert_eq!(ClientData::parse(&d.encode()), Some(d));
    }
}
