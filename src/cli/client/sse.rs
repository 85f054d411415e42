//! A small blocking reader of Server-Sent Events (the `text/event-stream` format of the HTML
//! standard): `id:`, `event:` and `data:` fields (several `data:` lines are joined with `\n`),
//! comments (`:` lines, the server's keep-alives) skipped, an event dispatched at each blank
//! line. Lines end with `\n`, `\r\n` or a lone `\r`; a line longer than [`MAX_LINE`] is an
//! error rather than unbounded memory.

use std::io::{self, BufRead};

/// The longest line read (an event's JSON is far smaller).
pub const MAX_LINE: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` of this event, if it had one.
    pub id: Option<String>,
    /// The `event:` field, `message` when absent.
    pub event: String,
    pub data: String,
}

/// Reads events from a byte stream.
pub struct SseReader<R> {
    inner: R,
    /// A `\r` ended the last line: a `\n` right after it belongs to it.
    after_cr: bool,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(inner: R) -> SseReader<R> {
        SseReader {
            inner,
            after_cr: false,
        }
    }

    /// The next event; `None` at the end of the stream (an event cut off by the end is
    /// dropped, as the standard says).
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut id = None;
        let mut event = None;
        let mut data: Option<String> = None;
        loop {
            let Some(line) = self.line()? else {
                return Ok(None);
            };
            if line.is_empty() {
                match data.take() {
                    Some(data) => {
                        return Ok(Some(SseEvent {
                            id,
                            event: event.unwrap_or_else(|| "message".into()),
                            data,
                        }))
                    }
                    None => {
                        // No data: nothing to dispatch (a keep-alive or a bare id).
                        id = None;
                        event = None;
                        continue;
                    }
                }
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "id" if !value.contains('\0') => id = Some(value.to_string()),
                "event" => event = Some(value.to_string()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {} // `retry:` and unknown fields
            }
        }
    }

    /// One line without its ending; `None` at the end of the stream.
    fn line(&mut self) -> io::Result<Option<String>> {
        let mut bytes = Vec::new();
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                // End of stream: a last line without an ending is incomplete.
                return Ok(None);
            }
            let mut start = 0;
            if self.after_cr {
                self.after_cr = false;
                if buf[0] == b'\n' {
                    start = 1;
                }
            }
            match buf[start..].iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(i) => {
                    let end = start + i;
                    bytes.extend_from_slice(&buf[start..end]);
                    self.after_cr = buf[end] == b'\r';
                    self.inner.consume(end + 1);
                    return String::from_utf8(bytes)
                        .map(Some)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
                }
                None => {
                    bytes.extend_from_slice(&buf[start..]);
                    let n = buf.len();
                    self.inner.consume(n);
                    if bytes.len() > MAX_LINE {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "an event-stream line is too long",
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Vec<SseEvent> {
        // A tiny buffer splits lines and line endings across reads.
        let mut r = SseReader::new(io::BufReader::with_capacity(3, text));
        let mut out = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    fn ev(id: Option<&str>, event: &str, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(str::to_string),
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_comments_and_line_endings() {
        let text = b": keep-alive\n\nid: 1\nevent: queued\ndata: {\"seq\":1}\n\n\
                     id:2\r\nevent:progress\r\ndata: a\r\ndata:b\r\n\r\n\
                     data: plain\r\rretry: 10\nid: 3\nevent: cut";
        assert_eq!(
            all(text),
            [
                ev(Some("1"), "queued", "{\"seq\":1}"),
                ev(Some("2"), "progress", "a\nb"),
                ev(None, "message", "plain"),
            ]
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(
            all(b"id: 7\nevent: x\n\ndata: y\n\n"),
            [ev(None, "message", "y")]
        );
    }

    #[test]
    fn overlong_lines_are_errors() {
        let text = vec![b'a'; MAX_LINE + 10];
        let mut r = SseReader::new(io::BufReader::new(text.as_slice()));
        assert!(r.next_event().is_err());
    }
}
