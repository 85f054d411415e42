//! The bundle's `SHA256SUMS`: the SHA-256 of its files, in the format `sha256sum` writes and
//! `sha256sum -c` reads (`<64 hex digits>  <file>` per line, paths relative to the bundle).
//!
//! It exists so that a bundle copied between machines (several GB of graphs) can be checked
//! before a node loads it: a truncated or corrupted graph is named with its expected and actual
//! digest instead of failing later inside ONNX Runtime, or worse, loading and singing wrong.
//! `refrain doctor` verifies it; loading a bundle does not (hashing gigabytes at every start is
//! too slow), and a bundle without the file is still valid.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::Bundle;

/// The checksum file's name inside a bundle directory.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Why a bundle's checksums do not hold.
#[derive(Debug, Error)]
pub enum ChecksumError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: expected `<sha256 hex>  <file>`")]
    Syntax { path: String, line: usize },
    #[error("{file}: SHA-256 is {actual}, {sums} says {expected}")]
    Mismatch {
        file: String,
        sums: String,
        expected: String,
        actual: String,
    },
}

/// The outcome of a verification that found no mismatch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Files whose digest matched.
    pub files: usize,
    /// Bytes hashed.
    pub bytes: u64,
    /// Files the manifest names that `SHA256SUMS` does not list (not verified).
    pub unlisted: Vec<PathBuf>,
}

/// One line of a `SHA256SUMS` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: String,
    pub file: PathBuf,
}

/// Parses `SHA256SUMS` text (`path` is only for the error).
pub fn parse(text: &str, path: &str) -> Result<Vec<Entry>, ChecksumError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let syntax = || ChecksumError::Syntax {
            path: path.to_string(),
            line: i + 1,
        };
        let (digest, rest) = line.split_once(' ').ok_or_else(syntax)?;
        // `sha256sum` writes two spaces (text mode) or a space and `*` (binary mode).
        let file = rest
            .strip_prefix(' ')
            .or_else(|| rest.strip_prefix('*'))
            .ok_or_else(syntax)?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) || file.is_empty() {
            return Err(syntax());
        }
        out.push(Entry {
            digest: digest.to_ascii_lowercase(),
            file: PathBuf::from(file),
        });
    }
    Ok(out)
}

/// The SHA-256 of a file, as lowercase hex, and its size.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, bytes))
}

impl Bundle {
    /// The files the manifest names (graphs, tokenizer, negative style, vocabulary, the Mandarin
    /// data files present).
    pub fn files(&self) -> Vec<PathBuf> {
        let m = &self.manifest;
        let mut out: Vec<PathBuf> = m.dit.iter().map(|d| d.file.clone()).collect();
        out.push(m.vae.decoder.clone());
        out.extend(m.vae.encoder.clone());
        out.push(m.style.text_encoder.clone());
        out.push(m.style.tokenizer.clone());
        out.push(m.style.audio_encoder.clone());
        out.push(m.style.negative.clone());
        out.push(m.lyrics.vocab.clone());
        out.extend(m.lyrics.mandarin_required());
        out.extend(
            m.lyrics
                .mandarin_optional()
                .into_iter()
                .filter(|f| self.file(f).is_file()),
        );
        out
    }

    /// The bundle's `SHA256SUMS`, if it has one.
    pub fn sums_path(&self) -> Option<PathBuf> {
        Some(self.dir.join(SUMS_FILE)).filter(|p| p.is_file())
    }

    /// Checks every file `SHA256SUMS` lists against its digest (`Ok(None)`: no such file).
    /// The first mismatch, or a listed file that cannot be read, is the error.
    pub fn verify_checksums(&self) -> Result<Option<Verified>, ChecksumError> {
        let Some(sums) = self.sums_path() else {
            return Ok(None);
        };
        let shown = sums.display().to_string();
        let text = std::fs::read_to_string(&sums).map_err(|source| ChecksumError::Read {
            path: shown.clone(),
            source,
        })?;
        let entries = parse(&text, &shown)?;
        let mut verified = Verified::default();
        for entry in &entries {
            let path = self.file(&entry.file);
            let (actual, bytes) = sha256_file(&path).map_err(|source| ChecksumError::Read {
                path: path.display().to_string(),
                source,
            })?;
            if actual != entry.digest {
                return Err(ChecksumError::Mismatch {
                    file: path.display().to_string(),
                    sums: shown,
                    expected: entry.digest.clone(),
                    actual,
                });
            }
            verified.files += 1;
            verified.bytes += bytes;
        }
        let listed = |f: &PathBuf| entries.iter().any(|e| normal(&e.file) == normal(f));
        verified.unlisted = self.files().into_iter().filter(|f| !listed(f)).collect();
        Ok(Some(verified))
    }
}

/// `./a.onnx` and `a.onnx` name the same file.
fn normal(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_bundle() -> Bundle {
        Bundle::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle")).unwrap()
    }

    #[test]
    fn parses_sha256sum_output() {
        let d = "a".repeat(64);
        let text = format!("{d}  x.onnx\n\n# comment\n{} *sub/y.json\n", "B".repeat(64));
        let e = parse(&text, "S").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].file, PathBuf::from("sub/y.json"));
        assert_eq!(e[1].digest, "b".repeat(64));
        for bad in ["abc  x", &format!("{d} x"), &format!("{d}  "), "zz"] {
            assert!(matches!(
                parse(bad, "S"),
                Err(ChecksumError::Syntax { line: 1, .. })
            ));
        }
    }

    #[test]
    fn the_test_bundle_verifies_and_lists_every_file() {
        let v = test_bundle().verify_checksums().unwrap().unwrap();
        assert!(v.unlisted.is_empty(), "{:?}", v.unlisted);
        // the manifest's files, bundle.toml and the float16 variant's manifest and graphs
        assert_eq!(v.files, test_bundle().files().len() + 4);
    }

    #[test]
    fn a_changed_byte_is_a_mismatch_naming_the_file() {
        let src = test_bundle();
        let dir = tempfile::tempdir().unwrap();
        crate::bundle::tests::copy_dir(&src.dir, dir.path());
        let vocab = dir.path().join("vocab.json");
        let mut bytes = std::fs::read(&vocab).unwrap();
        bytes.push(b' ');
        std::fs::write(&vocab, bytes).unwrap();
        let e = Bundle::load(dir.path())
            .unwrap()
            .verify_checksums()
            .unwrap_err();
        assert!(
            matches!(&e, ChecksumError::Mismatch { file, .. } if file.ends_with("vocab.json")),
            "{e}"
        );
        std::fs::remove_file(dir.path().join(SUMS_FILE)).unwrap();
        assert!(Bundle::load(dir.path())
            .unwrap()
            .verify_checksums()
            .unwrap()
            .is_none());
    }
}
