//! Reading a `multipart/form-data` body into named parts, with limits.
//!
//! * Only the field names the caller lists are kept; any other field (e.g. the `_dummy` the
//!   DiffRhythm spec's Python client sends to force multipart) is skipped unread.
//! * Each part is streamed chunk by chunk with a running size check: file fields against the
//!   upload limit, text fields against the text limit; over it answers 413 naming the field.
//!   The whole body is bounded by the router's `DefaultBodyLimit` (413 naming `body`).
//! * A field given twice is a 400.
//! * A text field whose trimmed value is empty counts as absent (what HTML forms send for an
//!   empty input), and so does a file field with an empty file name and no bytes (an HTML file
//!   input left empty).

use std::collections::HashMap;

use axum::extract::Multipart;

use super::error::multipart_error;
use crate::error::{Field, OrchestratorError};

/// One uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub bytes: Vec<u8>,
    /// The part's `filename`, if it had one.
    pub file_name: Option<String>,
    /// The part's `Content-Type`, if it had one.
    pub content_type: Option<String>,
}

impl Upload {
    /// A decoder hint: the file name's extension (lower-cased, alphanumeric only), else one
    /// derived from the content type.
    pub fn extension_hint(&self) -> Option<String> {
        self.file_name
            .as_deref()
            .and_then(crate::outbound::hint_from_path)
            .or_else(|| {
                self.content_type
                    .as_deref()
                    .and_then(crate::outbound::hint_from_content_type)
            })
    }
}

/// A part: text, or a file.
#[derive(Debug, Clone)]
pub enum Part {
    Text(String),
    File(Upload),
}

/// How each known field is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text; a file part is read as UTF-8 text (so `-F lrc=@song.lrc` works).
    Text,
    /// Always a file (its bytes are kept whatever the part's headers say).
    File,
    /// A file part is a file, any other part text.
    TextOrFile,
}

/// Size limits of one form.
#[derive(Debug, Clone, Copy)]
pub struct FormLimits {
    /// Largest file part, bytes.
    pub upload: usize,
    /// Largest text part, bytes.
    pub text: usize,
    /// The whole body (for the 413 message).
    pub body: usize,
}

/// The known parts of a form, by name.
#[derive(Debug, Default)]
pub struct Form {
    parts: HashMap<String, Part>,
}

impl Form {
    /// Reads every part of `multipart`, keeping the `fields` listed.
    pub async fn read(
        multipart: &mut Multipart,
        fields: &[(&str, Kind)],
        limits: FormLimits,
    ) -> Result<Form, OrchestratorError> {
        let mut form = Form::default();
        let mut seen: Vec<String> = Vec::new();
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e, limits.body))?
        {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let Some(&(_, kind)) = fields.iter().find(|(n, _)| *n == name) else {
                continue; // unknown field: skipped unread
            };
            if seen.contains(&name) {
                return Err(OrchestratorError::invalid(
                    Field::Named(name),
                    "given more than once",
                ));
            }
            seen.push(name.clone());
            let file_name = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let is_file = match kind {
                Kind::File => true,
                Kind::Text => false,
                Kind::TextOrFile => file_name.is_some(),
            };
            let limit = if is_file { limits.upload } else { limits.text };
            let mut bytes = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, limits.body))?
            {
                if bytes.len() + chunk.len() > limit {
                    return Err(OrchestratorError::TooLarge {
                        field: Field::Named(name),
                        limit,
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            let part = if is_file {
                if bytes.is_empty() && file_name.as_deref().is_some_and(str::is_empty) {
                    continue; // an HTML file input left empty
                }
                Part::File(Upload {
                    bytes,
                    file_name,
                    content_type,
                })
            } else {
                let text = String::from_utf8(bytes).map_err(|_| {
                    OrchestratorError::invalid(Field::Named(name.clone()), "not valid UTF-8 text")
                })?;
                if text.trim().is_empty() {
                    continue;
                }
                Part::Text(text)
            };
            form.parts.insert(name, part);
        }
        Ok(form)
    }

    /// Whether `name` was given (and not empty).
    pub fn has(&self, name: &str) -> bool {
        self.parts.contains_key(name)
    }

    /// The text of a `Kind::Text` field (a file part of a `TextOrFile` field is not text).
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.parts.get(name) {
            Some(Part::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// Removes and returns a part.
    pub fn take(&mut self, name: &str) -> Option<Part> {
        self.parts.remove(name)
    }
}

/// Parses a form boolean: true/false, 1/0, yes/no, on/off (any case).
pub fn parse_bool(field: &str, value: &str) -> Result<bool, OrchestratorError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(OrchestratorError::invalid(
            Field::Named(field.to_string()),
            format!(
                "expected true or false (or 1/0, yes/no, on/off), not {:?}",
                truncate(value)
            ),
        )),
    }
}

/// A value shortened for an error message.
pub fn truncate(value: &str) -> String {
    crate::admission::shorten(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools() {
        for t in ["true", "TRUE", " 1 ", "yes", "On"] {
            assert!(parse_bool("chunked", t).unwrap(), "{t}");
        }
        for f in ["false", "False", "0", "no", "OFF"] {
            assert!(!parse_bool("chunked", f).unwrap(), "{f}");
        }
        for bad in ["maybe", "2", "tru", "yess"] {
            let e = parse_bool("chunked", bad).unwrap_err();
            assert!(e.to_string().starts_with("chunked: "), "{e}");
        }
    }

    #[test]
    fn hints() {
        let up = |name: Option<&str>, ct: Option<&str>| Upload {
            bytes: vec![],
            file_name: name.map(str::to_owned),
            content_type: ct.map(str::to_owned),
        };
        assert_eq!(
            up(Some("Song.MP3"), None).extension_hint().as_deref(),
            Some("mp3")
        );
        assert_eq!(
            up(Some("a.b/../x.w-a-v"), None).extension_hint().as_deref(),
            Some("wav")
        );
        assert_eq!(
            up(Some("noext"), Some("audio/x-wav"))
                .extension_hint()
                .as_deref(),
            Some("wav")
        );
        assert_eq!(
            up(None, Some("audio/flac; q=1"))
                .extension_hint()
                .as_deref(),
            Some("flac")
        );
        assert_eq!(
            up(None, Some("application/octet-stream")).extension_hint(),
            None
        );
    }
}
