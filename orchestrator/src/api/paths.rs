//! Client-supplied file names: the `{*file}` of `GET /output/…` and a text `ref_song`.
//!
//! A name is accepted only as a relative path of plain components: no `..` or `.`, no empty
//! component, no leading `/`, no backslash, no NUL or other control character, and no `%` left
//! after the one percent-decoding of a URL path (so `%252e%252e` cannot become `..` in a second
//! decoding anywhere downstream). Whatever passes is then only ever used as a key for the job
//! store and, through `OutputStore::resolve`, under the output root.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left unescaped in a URL path segment we produce.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Checks that `path` is a relative path of plain names; the error says why not.
pub fn check_plain_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("the file name is empty".into());
    }
    if path.starts_with('/') {
        return Err("absolute paths are not accepted".into());
    }
    if path.contains('\\') {
        return Err("backslashes are not accepted".into());
    }
    if path.chars().any(char::is_control) {
        return Err("control characters are not accepted".into());
    }
    if path.contains('%') {
        return Err("'%' is not accepted in file names (percent-encoding is decoded once)".into());
    }
    for component in path.split('/') {
        match component {
            "" => return Err("empty path components are not accepted".into()),
            "." | ".." => return Err("'.' and '..' path components are not accepted".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Decodes the raw (still percent-encoded) part of a request path after `/output/` once and
/// checks it: plain relative components, ending in `.wav`, `.mp3` or `.ogg`.
pub fn decode_output_file(raw: &str) -> Result<String, String> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "the file name is not valid UTF-8".to_string())?;
    check_plain_relative(&decoded)?;
    let served = protocol::AudioFormat::ALL
        .iter()
        .any(|f| decoded.ends_with(&format!(".{}", f.extension())));
    if !served {
        return Err("only .wav, .mp3 and .ogg result files are served".into());
    }
    Ok(decoded.into_owned())
}

/// Checks a result file name (plain relative components, `.wav`).
pub fn check_result_name(name: &str) -> Result<(), String> {
    check_plain_relative(name)?;
    if !name.ends_with(".wav") {
        return Err("only .wav result files are served".into());
    }
    Ok(())
}

/// The URL path of a result file: `/output/` and the file's components, percent-encoded.
pub fn output_url(file: &str) -> String {
    let mut url = String::from("/output");
    for component in file.split('/') {
        url.push('/');
        url.extend(utf8_percent_encode(component, SEGMENT));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        let id = "ab".repeat(16);
        assert_eq!(
            decode_output_file(&format!("{id}.wav")).unwrap(),
            format!("{id}.wav")
        );
        assert_eq!(
            decode_output_file(&format!("sub/dir/{id}.wav")).unwrap(),
            format!("sub/dir/{id}.wav")
        );
        assert_eq!(
            decode_output_file("my%20songs/x.wav").unwrap(),
            "my songs/x.wav"
        );
        assert_eq!(output_url("my songs/x.wav"), "/output/my%20songs/x.wav");
        assert_eq!(
            output_url(&format!("{id}.wav")),
            format!("/output/{id}.wav")
        );
    }

    #[test]
    fn traversal_in_any_encoding_fails() {
        for bad in [
            "../x.wav",
            "..%2fx.wav",
            "%2e%2e/x.wav",
            "%2E%2E%2Fx.wav",
            "..%2f..%2fetc%2fpasswd.wav",
            "%252e%252e%252fx.wav",
            "a/../../b.wav",
            "./x.wav",
            "/etc/x.wav",
            "%2fetc%2fx.wav",
            "a//b.wav",
            "a\\..\\b.wav",
            "a%5c..%5cb.wav",
            "x%00.wav",
            "x.wav%00",
            "%ff.wav",
            "x.txt",
            "x.wav/",
            "",
        ] {
            assert!(decode_output_file(bad).is_err(), "{bad} was accepted");
        }
    }
}
