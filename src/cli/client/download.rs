//! Songs from the server to files: the formats of the API ([`Format`]), the audio URL of a
//! job's variant ([`audio_path`]), the file of each variant ([`variant_path`]: `OUT`, `OUT-2`,
//! … as `refrain generate --batch`) and the atomic write of a download ([`save`]: a temporary
//! file next to the target, synced, then renamed over it; nothing is left behind on failure).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use reqwest::blocking::Response;
use reqwest::header::CONTENT_TYPE;

use super::{innermost, Client, ClientError};

/// The audio formats of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Wav,
    Mp3,
    Ogg,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Wav => "wav",
            Format::Mp3 => "mp3",
            Format::Ogg => "ogg",
        }
    }

    /// The format a file name's extension names.
    pub fn of_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "wav" => Some(Format::Wav),
            "mp3" => Some(Format::Mp3),
            "ogg" | "oga" => Some(Format::Ogg),
            _ => None,
        }
    }

    /// The format of an answer's `Content-Type`.
    pub fn of_response(response: &Response) -> Option<Format> {
        let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
        let mime = value.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some(Format::Wav),
            "audio/mpeg" | "audio/mp3" => Some(Format::Mp3),
            "audio/ogg" | "audio/vorbis" | "application/ogg" => Some(Format::Ogg),
            _ => None,
        }
    }
}

/// `GET /api/v1/jobs/{id}/audio/{variant}` (with `?format=` when given).
pub fn audio_path(id: &str, variant: u32, format: Option<Format>) -> String {
    match format {
        Some(f) => format!("/api/v1/jobs/{id}/audio/{variant}?format={}", f.as_str()),
        None => format!("/api/v1/jobs/{id}/audio/{variant}"),
    }
}

/// `OUT.ext` for variant 1, `OUT-2.ext`… for the others (as `refrain generate --batch`).
pub fn variant_path(out: &Path, variant: u32, default_ext: &str) -> PathBuf {
    if variant <= 1 {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| default_ext.to_string());
    out.with_file_name(format!("{stem}-{variant}.{ext}"))
}

/// Writes the body of `response` to `out` atomically: a temporary file next to it, synced,
/// then renamed over `out`; nothing is left behind on failure. The bytes written.
pub fn save(client: &Client, mut response: Response, out: &Path) -> Result<u64, ClientError> {
    let file_error = |context, path: &Path, source| ClientError::File {
        context,
        path: path.to_path_buf(),
        source,
    };
    let name = out
        .file_name()
        .ok_or_else(|| {
            file_error(
                "not a file name:",
                out,
                std::io::Error::other("give a file path"),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let temp = out.with_file_name(format!(".{name}.{}.part", std::process::id()));
    let result = (|| {
        let mut file =
            std::fs::File::create(&temp).map_err(|e| file_error("cannot create", &temp, e))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            let n = match response.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ClientError::Unreachable {
                        base: client.base().to_string(),
                        reason: format!("the download broke off: {}", innermost(&e)),
                    })
                }
            };
            file.write_all(&buf[..n])
                .map_err(|e| file_error("cannot write", &temp, e))?;
            written += n as u64;
        }
        file.sync_all()
            .map_err(|e| file_error("cannot write", &temp, e))?;
        std::fs::rename(&temp, out).map_err(|e| file_error("cannot write", out, e))?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        assert_eq!(
            variant_path(Path::new("a/song.mp3"), 2, "wav"),
            PathBuf::from("a/song-2.mp3")
        );
        assert_eq!(
            variant_path(Path::new("song"), 3, "ogg"),
            PathBuf::from("song-3.ogg")
        );
        assert_eq!(
            variant_path(Path::new("x.wav"), 1, "wav"),
            PathBuf::from("x.wav")
        );
        assert_eq!(Format::of_path(Path::new("a.MP3")), Some(Format::Mp3));
        assert_eq!(
            audio_path("ab12", 2, Some(Format::Ogg)),
            "/api/v1/jobs/ab12/audio/2?format=ogg"
        );
    }
}
