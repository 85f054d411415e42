//! Uploaded files (reference audio, songs to edit), stored under ids the server chooses.
//!
//! A client never names a path: `put` returns `<32 hex>.<ext>` and every other call accepts only
//! that exact form, so no request can reach outside the upload directory. Writes are atomic
//! (temporary file in the same directory, fsync, rename, fsync of the directory), so a blob that
//! a job refers to is either complete or absent, even after `kill -9`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What can go wrong with an upload.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Not a blob name this store hands out (`<32 hex>.<ext>`), or an invalid extension.
    #[error("invalid upload id {0:?}")]
    BadId(String),
    #[error("no upload {0}")]
    NotFound(String),
}

/// The upload directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Prefix of temporary files (never a valid blob name: those start with a hex digit).
const TEMP_PREFIX: &str = ".upload-";

impl BlobStore {
    /// Opens the upload directory, creating it, and removes temporary files left by a crash.
    pub fn open(dir: &Path) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io(format!("creating upload directory {}", dir.display()), e))?;
        let entries =
            std::fs::read_dir(dir).map_err(|e| io(format!("reading {}", dir.display()), e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a stale temporary upload");
                }
            }
        }
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Stores `bytes` under a new random id and returns its name, `<id>.<ext>`. `ext` (e.g.
    /// "wav", "mp3", "flac") must be 1–8 lowercase ASCII letters or digits; it is kept as a
    /// hint for decoders.
    pub async fn put(&self, bytes: &[u8], ext: &str) -> Result<String, BlobError> {
        if !valid_ext(ext) {
            return Err(BlobError::BadId(format!("extension {ext:?}")));
        }
        let name = format!("{}.{ext}", random_hex());
        let dir = self.dir.clone();
        let target = self.dir.join(&name);
        let bytes = bytes.to_vec();
        let display = name.clone();
        run_blocking(move || write_atomic(&dir, &target, &bytes, TEMP_PREFIX))
            .await
            .map_err(|e| io(format!("storing upload {display}"), e))?;
        Ok(name)
    }

    /// The path of a blob, after validating its name strictly (`<32 hex>.<ext>`): never a
    /// client-chosen path.
    pub fn path(&self, blob: &str) -> Result<PathBuf, BlobError> {
        if !valid_name(blob) {
            return Err(BlobError::BadId(blob.to_string()));
        }
        Ok(self.dir.join(blob))
    }

    pub async fn read(&self, blob: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(blob)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::NotFound(blob.to_string()))
            }
            Err(e) => Err(io(format!("reading upload {blob}"), e)),
        }
    }

    /// Deletes a blob; one that is already gone is fine.
    pub async fn delete(&self, blob: &str) -> Result<(), BlobError> {
        let path = self.path(blob)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("deleting upload {blob}"), e)),
        }
    }
}

fn io(context: String, source: std::io::Error) -> BlobError {
    BlobError::Io { context, source }
}

fn valid_ext(ext: &str) -> bool {
    (1..=8).contains(&ext.len())
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn valid_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((id, ext)) => {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && valid_ext(ext)
        }
        None => false,
    }
}

/// 32 lowercase hex digits from 16 random bytes.
pub(crate) fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs blocking file work off the async threads.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("blocking file task failed: {e}")))?
}

/// Writes `bytes` to `target` atomically: a temporary file `<temp_prefix><random>` in `dir`
/// (the target's directory), fsynced, renamed over the target, then the directory fsynced so
/// the rename itself is durable. The temporary file is removed on failure.
pub(crate) fn write_atomic(
    dir: &Path,
    target: &Path,
    bytes: &[u8],
    temp_prefix: &str,
) -> std::io::Result<()> {
    let temp = dir.join(format!("{temp_prefix}{}", random_hex()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// fsyncs a directory (makes a rename or a new entry in it durable).
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_read_delete() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(&dir.path().join("uploads")).unwrap();
        let name = blobs.put(b"RIFF....", "wav").await.unwrap();
        assert!(valid_name(&name), "{name}");
        assert!(name.ends_with(".wav"));
        assert_eq!(blobs.read(&name).await.unwrap(), b"RIFF....");
        assert_eq!(
            blobs.path(&name).unwrap(),
            dir.path().join("uploads").join(&name)
        );
        let other = blobs.put(b"x", "mp3").await.unwrap();
        assert_ne!(name, other);
        blobs.delete(&name).await.unwrap();
        blobs.delete(&name).await.unwrap();
        assert!(matches!(
            blobs.read(&name).await,
            Err(BlobError::NotFound(_))
        ));
        // Only finished blobs are in the directory: no temporary file left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![other]);
    }

    #[tokio::test]
    async fn names_and_extensions_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        for ext in [
            "",
            "WAV",
            "w.v",
            "../x",
            "a/b",
            "toolongext",
            "wa\0v",
            "mp3 ",
        ] {
            assert!(
                matches!(blobs.put(b"x", ext).await, Err(BlobError::BadId(_))),
                "{ext:?}"
            );
        }
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(blobs.path(&format!("{hex}.wav")).is_ok());
        for bad in [
            String::new(),
            hex.to_string(),
            format!("{hex}."),
            format!("{hex}.wav.x"),
            format!("{}.wav", hex.to_uppercase()),
            format!("{}.wav", &hex[1..]),
            format!("../{hex}.wav"),
            format!("/etc/{hex}.wav"),
            "../../etc/passwd".into(),
            "%2e%2e/x.wav".into(),
            format!("{hex}.w\\v"),
            format!("{hex}.wav\0"),
            format!("{hex}/.wav"),
        ] {
            assert!(
                matches!(blobs.path(&bad), Err(BlobError::BadId(_))),
                "{bad:?}"
            );
            assert!(
                matches!(blobs.read(&bad).await, Err(BlobError::BadId(_))),
                "{bad:?}"
            );
            assert!(
                matches!(blobs.delete(&bad).await, Err(BlobError::BadId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn open_removes_stale_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{TEMP_PREFIX}abc")), b"half").unwrap();
        std::fs::write(
            dir.path().join("0123456789abcdef0123456789abcdef.wav"),
            b"whole",
        )
        .unwrap();
        BlobStore::open(dir.path()).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["0123456789abcdef0123456789abcdef.wav".to_string()]
        );
    }
}
