//! Result files: the WAVs that jobs produce, under one output root.
//!
//! Clients may choose a sub-folder (`output_dir`) but never a path: [`OutputStore::validate_subdir`]
//! accepts only short relative names made of `[A-Za-z0-9._-]`, and every file operation
//! re-validates the name and checks, after resolving symlinks, that it stays under the root.
//! Writes are atomic (temporary file in the same folder, fsync, rename, fsync of the folder), so
//! a result file that exists is complete, even after `kill -9`.

use std::path::{Path, PathBuf};

use protocol::JobId;

use crate::blobs::{run_blocking, sync_dir, write_atomic};

/// What can go wrong with result files.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A client's `output_dir` that is not acceptable, with the reason.
    #[error("invalid output_dir: {0}")]
    BadSubdir(String),
    /// A result file name that is not acceptable (or leads outside the root).
    #[error("invalid result file name: {0}")]
    BadName(String),
}

/// The output root.
#[derive(Debug, Clone)]
pub struct OutputStore {
    root: PathBuf,
    /// `root` with symlinks resolved: every resolved path must stay under it.
    canonical_root: PathBuf,
    /// Bitrates for MP3 and Ogg/Opus results.
    encoding: refrain_formats::EncodeSettings,
    /// Held while a lossy file is made, so each is transcoded once (see `jobs::results`).
    transcoding: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Most folder levels an `output_dir` may have.
const MAX_DEPTH: usize = 8;
/// Longest name of one folder or file.
const MAX_COMPONENT: usize = 64;
/// Prefix of temporary files; `list` skips every name starting with '.'.
const TEMP_PREFIX: &str = ".output-";

impl OutputStore {
    /// Opens the output root, creating it, and removes temporary files left by a crash.
    pub fn open(root: &Path) -> Result<OutputStore, OutputError> {
        std::fs::create_dir_all(root)
            .map_err(|e| io(format!("creating output root {}", root.display()), e))?;
        let canonical_root = std::fs::canonicalize(root)
            .map_err(|e| io(format!("resolving output root {}", root.display()), e))?;
        remove_temporaries(&canonical_root, 0);
        Ok(OutputStore {
            root: root.to_path_buf(),
            canonical_root,
            encoding: refrain_formats::EncodeSettings::default(),
            transcoding: Default::default(),
        })
    }

    /// The same store, encoding lossy formats with `encoding` (`[formats]` of the config).
    pub fn with_encoding(mut self, encoding: refrain_formats::EncodeSettings) -> OutputStore {
        self.encoding = encoding;
        self
    }

    pub fn encoding(&self) -> &refrain_formats::EncodeSettings {
        &self.encoding
    }

    /// The lock that makes each transcode happen once.
    pub(crate) fn transcoding(&self) -> &tokio::sync::Mutex<()> {
        &self.transcoding
    }

    /// The output root, as configured.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Validates a client `output_dir`: relative, 1–8 components of `[A-Za-z0-9._-]` (1–64
    /// characters, none starting with `.`); no absolute path, backslash, NUL or `%` (no
    /// percent-encoding tricks). Repeated and trailing slashes are dropped: returns the
    /// normalised `a/b` form. Anything else is `BadSubdir`, saying why.
    pub fn validate_subdir(raw: &str) -> Result<String, OutputError> {
        let bad = |why: String| Err(OutputError::BadSubdir(why));
        if raw.is_empty() {
            return bad("it is empty".into());
        }
        if raw.contains('\0') {
            return bad("it contains a NUL byte".into());
        }
        if raw.contains('\\') {
            return bad("it contains a backslash; use '/' between folders".into());
        }
        if raw.contains('%') {
            return bad("it contains '%' (percent-encoding is not accepted)".into());
        }
        if raw.starts_with('/') {
            return bad("it must be relative to the output folder, not an absolute path".into());
        }
        let parts: Vec<&str> = raw.split('/').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() {
            return bad("it names no folder".into());
        }
        if parts.len() > MAX_DEPTH {
            return bad(format!(
                "it has {} levels, at most {MAX_DEPTH} are allowed",
                parts.len()
            ));
        }
        for part in &parts {
            check_component(part).map_err(OutputError::BadSubdir)?;
            if part.starts_with('.') {
                // Hidden folders are left out of listings (`GET /files`): not for results.
                return bad(format!("{part:?} starts with '.'"));
            }
        }
        Ok(parts.join("/"))
    }

    /// [`OutputStore::validate_subdir`], and the folder must lead to a place under the root as
    /// it is now: a folder that exists and is (or passes through) a symlink leading elsewhere is
    /// refused here, at admission, not when the result is written.
    pub fn check_subdir(&self, raw: &str) -> Result<String, OutputError> {
        let normal = Self::validate_subdir(raw)?;
        let probe = self.root.join(&normal);
        self.check_inside(&probe, &normal).map_err(|e| match e {
            OutputError::BadName(_) => OutputError::BadSubdir(format!(
                "{normal:?} leads outside the output folder (a symbolic link)"
            )),
            other => other,
        })?;
        Ok(normal)
    }

    /// The result file name relative to the root: `sub/dir/<id>.wav` or `<id>.wav`.
    pub fn relative(subdir: Option<&str>, id: &JobId) -> String {
        match subdir.map(|s| s.trim_matches('/')) {
            Some(s) if !s.is_empty() => format!("{s}/{}", id.file_name()),
            _ => id.file_name(),
        }
    }

    /// The file name of variant `variant` (1-based) in `format`: variant 1 as WAV is
    /// [`OutputStore::relative`]; others are `<id>-<variant>.<ext>` beside it.
    pub fn variant_relative(
        subdir: Option<&str>,
        id: &JobId,
        variant: u32,
        format: protocol::AudioFormat,
    ) -> String {
        let name = match (variant, format) {
            (1, protocol::AudioFormat::Wav) => return Self::relative(subdir, id),
            (1, f) => format!("{id}.{}", f.extension()),
            (v, f) => format!("{id}-{v}.{}", f.extension()),
        };
        match subdir.map(|s| s.trim_matches('/')) {
            Some(s) if !s.is_empty() => format!("{s}/{name}"),
            _ => name,
        }
    }

    /// Resolves a relative name to a path under the root. Every component is re-validated
    /// (defence in depth: the folder part must be in normalised form), and the deepest part of
    /// the path that exists is canonicalised and must still be under the root, so a symlink
    /// cannot lead outside.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, OutputError> {
        let (dir, file) = match relative.rsplit_once('/') {
            Some((dir, file)) => (Some(dir), file),
            None => (None, relative),
        };
        check_component(file)
            .map_err(|why| OutputError::BadName(format!("{relative:?}: {why}")))?;
        if let Some(dir) = dir {
            let normal = Self::validate_subdir(dir)
                .map_err(|e| OutputError::BadName(format!("{relative:?}: {e}")))?;
            if normal != dir {
                return Err(OutputError::BadName(format!(
                    "{relative:?} is not in normal form"
                )));
            }
        }
        let path = self.root.join(relative);
        self.check_inside(&path, relative)?;
        Ok(path)
    }

    /// Checks that the deepest existing part of `path` resolves to a place under the root.
    fn check_inside(&self, path: &Path, relative: &str) -> Result<(), OutputError> {
        let existing = path.ancestors().find(|p| p.exists());
        let Some(existing) = existing else {
            return Err(OutputError::BadName(format!(
                "{relative:?}: the output root is gone"
            )));
        };
        let canonical = std::fs::canonicalize(existing)
            .map_err(|e| io(format!("resolving {}", existing.display()), e))?;
        if !canonical.starts_with(&self.canonical_root) {
            return Err(OutputError::BadName(format!(
                "{relative:?} leads outside the output folder"
            )));
        }
        Ok(())
    }

    /// Writes a result atomically (temporary file in the same folder, fsync, rename, fsync of
    /// the folder), creating sub-folders. Returns the size written.
    pub async fn write(&self, relative: &str, bytes: &[u8]) -> Result<u64, OutputError> {
        let target = self.resolve(relative)?;
        let Some(parent) = target.parent().map(Path::to_path_buf) else {
            return Err(OutputError::BadName(format!("{relative:?} has no folder")));
        };
        // Sub-folders first; then check again, now that they exist, where they really are.
        let created = !parent.is_dir();
        if created {
            let dir = parent.clone();
            run_blocking(move || std::fs::create_dir_all(&dir))
                .await
                .map_err(|e| io(format!("creating folder for {relative}"), e))?;
            self.check_inside(&target, relative)?;
        }
        let root = self.root.clone();
        let bytes = bytes.to_vec();
        let len = bytes.len() as u64;
        run_blocking(move || {
            if created {
                // Make the new folders' entries durable too.
                for dir in parent.ancestors().skip(1) {
                    if dir.as_os_str().is_empty() {
                        break;
                    }
                    sync_dir(dir)?;
                    if dir == root {
                        break;
                    }
                }
            }
            write_atomic(&parent, &target, &bytes, TEMP_PREFIX)
        })
        .await
        .map_err(|e| io(format!("writing result {relative}"), e))?;
        Ok(len)
    }

    /// Deletes a result file; one that is already gone is fine.
    pub async fn delete(&self, relative: &str) -> Result<(), OutputError> {
        let path = self.resolve(relative)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("deleting result {relative}"), e)),
        }
    }

    /// All result files (relative names with '/', and sizes), sorted by name. Symlinks are
    /// not followed, and names that `resolve` would refuse (temporary files among them) are
    /// skipped.
    pub async fn list(&self) -> Result<Vec<(String, u64)>, OutputError> {
        let root = self.canonical_root.clone();
        let mut files = run_blocking(move || {
            let mut out = Vec::new();
            walk(&root, String::new(), 0, &mut out)?;
            Ok(out)
        })
        .await
        .map_err(|e| io("listing result files".into(), e))?;
        files.sort();
        Ok(files)
    }
}

fn walk(
    dir: &Path,
    prefix: String,
    depth: usize,
    out: &mut Vec<(String, u64)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || check_component(name).is_err() {
            continue;
        }
        let relative = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_file() {
            out.push((relative, entry.metadata()?.len()));
        } else if kind.is_dir() && depth < MAX_DEPTH {
            walk(&entry.path(), relative, depth + 1, out)?;
        }
    }
    Ok(())
}

/// Best effort: removes `.output-*` files under `dir` (not following symlinks).
fn remove_temporaries(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_file() && entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a stale temporary result");
            }
        } else if kind.is_dir() && depth < MAX_DEPTH {
            remove_temporaries(&path, depth + 1);
        }
    }
}

/// One folder or file name: 1–64 of `[A-Za-z0-9._-]`, not `.` or `..`.
fn check_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("an empty name".into());
    }
    if part == "." || part == ".." {
        return Err(format!("{part:?} is not allowed"));
    }
    if part.len() > MAX_COMPONENT {
        return Err(format!("a name is longer than {MAX_COMPONENT} characters"));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed (only letters, digits, '.', '_' and '-')"
        ));
    }
    Ok(())
}

fn io(context: String, source: std::io::Error) -> OutputError {
    OutputError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> JobId {
        JobId::from_bytes([0x5a; 16])
    }

    #[test]
    fn subdirs_are_validated_and_normalised() {
        for (raw, normal) in [
            ("a", "a"),
            ("a/b", "a/b"),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("x.y-z_1", "x.y-z_1"),
        ] {
            assert_eq!(OutputStore::validate_subdir(raw).unwrap(), normal, "{raw}");
        }
        let deep = ["d"; MAX_DEPTH].join("/");
        assert_eq!(OutputStore::validate_subdir(&deep).unwrap(), deep);
        let long = "x".repeat(MAX_COMPONENT);
        assert!(OutputStore::validate_subdir(&long).is_ok());
        for bad in [
            "",
            "/",
            "//",
            "...",
            ".hidden",
            "a/.git",
            "../x",
            "..",
            ".",
            "./a",
            "a/./b",
            "/etc",
            "/etc/passwd",
            "a/../../b",
            "a/..",
            "a\\b",
            "..\\x",
            "%2e%2e",
            "%2e%2e/x",
            "a%2fb",
            "a\0b",
            "a b",
            "a:b",
            "C:/x",
            "~/x",
            "naïve",
            &["d"; MAX_DEPTH + 1].join("/"),
            &"x".repeat(MAX_COMPONENT + 1),
        ] {
            match OutputStore::validate_subdir(bad) {
                Err(OutputError::BadSubdir(why)) => assert!(!why.is_empty()),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn relative_names() {
        assert_eq!(OutputStore::relative(None, &id()), id().file_name());
        assert_eq!(OutputStore::relative(Some(""), &id()), id().file_name());
        assert_eq!(
            OutputStore::relative(Some("a/b"), &id()),
            format!("a/b/{}", id().file_name())
        );
    }

    #[tokio::test]
    async fn write_resolve_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = OutputStore::open(&dir.path().join("out")).unwrap();
        let nested = OutputStore::relative(Some("a/b"), &id());
        assert_eq!(store.write(&nested, b"12345").await.unwrap(), 5);
        assert_eq!(store.write(&id().file_name(), b"xy").await.unwrap(), 2);
        assert_eq!(
            std::fs::read(store.resolve(&nested).unwrap()).unwrap(),
            b"12345"
        );
        // Overwrite is atomic too.
        assert_eq!(store.write(&nested, b"123").await.unwrap(), 3);
        assert_eq!(
            store.list().await.unwrap(),
            vec![(id().file_name(), 2), (nested.clone(), 3)]
        );
        // No temporary file is left anywhere.
        for d in [dir.path().join("out"), dir.path().join("out/a/b")] {
            for entry in std::fs::read_dir(&d).unwrap() {
                let name = entry.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with('.'), "{name} left in {}", d.display());
            }
        }
        store.delete(&nested).await.unwrap();
        store.delete(&nested).await.unwrap();
        assert_eq!(store.list().await.unwrap(), vec![(id().file_name(), 2)]);
    }

    #[tokio::test]
    async fn resolve_rejects_traversal() {
        let dir = tempfile::tempdir().unwrap();
        let store = OutputStore::open(dir.path()).unwrap();
        for bad in [
            "",
            "../x",
            "/etc/passwd",
            "/etc",
            "a/../../b",
            "a/./b.wav",
            "a\\b",
            "..\\b",
            "%2e%2e/x.wav",
            "%2e%2e",
            "a//b.wav",
            "a/",
            "a\0b",
            "..",
            ".",
            &format!("{}/x.wav", ["d"; MAX_DEPTH + 1].join("/")),
        ] {
            assert!(store.resolve(bad).is_err(), "{bad:?}");
            assert!(store.write(bad, b"x").await.is_err(), "{bad:?}");
            assert!(store.delete(bad).await.is_err(), "{bad:?}");
        }
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing was written"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_cannot_lead_outside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.wav"), b"secret").unwrap();
        let root = dir.path().join("root");
        let store = OutputStore::open(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.wav"), root.join("link.wav")).unwrap();

        for name in [
            "escape/secret.wav",
            "escape/new.wav",
            "escape/sub/new.wav",
            "link.wav",
        ] {
            assert!(
                matches!(store.resolve(name), Err(OutputError::BadName(_))),
                "{name}"
            );
            assert!(store.write(name, b"x").await.is_err(), "{name}");
        }
        assert!(store.delete("escape/secret.wav").await.is_err());
        assert_eq!(
            std::fs::read(outside.join("secret.wav")).unwrap(),
            b"secret"
        );
        assert!(!outside.join("new.wav").exists() && !outside.join("sub").exists());
        // list does not follow symlinks.
        assert!(store.list().await.unwrap().is_empty());

        // A symlink that stays inside is fine.
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        assert!(store.resolve("alias/x.wav").is_ok());
    }

    #[test]
    fn open_removes_stale_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(
            dir.path().join("a").join(format!("{TEMP_PREFIX}123")),
            b"half",
        )
        .unwrap();
        std::fs::write(dir.path().join("a").join("keep.wav"), b"whole").unwrap();
        OutputStore::open(dir.path()).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["keep.wav".to_string()]);
    }
}
