//! Full-track parity of `refrain lyrics` with the DiffRhythm reference's `get_lrc_token`.
//!
//! `tests/data/lyrics/parity.json` holds, for each LRC file of that directory and a song length,
//! the token track the reference produces (its own `get_lrc_token` and `CNENTokenizer`, English
//! path; see the file's `note` and `tools/lyrics_parity.py`, which regenerates it from a
//! DiffRhythm checkout). The real binary runs with the reference vocabulary
//! (`../shared/reference/diffrhythm-vocab.json`, the checkout's `g2p/g2p/vocab.json`) and its JSON
//! output must equal the expected track exactly: length, placement and every token id. The
//! vocabulary lives outside the workspace: without it the test is skipped with a message, except
//! in CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/reference/diffrhythm-vocab.json"
);

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lyrics")
}

/// Whether the reference vocabulary is there; outside CI its absence skips the test.
fn vocab_available() -> bool {
    if Path::new(VOCAB).is_file() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("reference vocabulary {VOCAB} not found in CI");
    }
    eprintln!("skipped: reference vocabulary {VOCAB} not found");
    false
}

struct Case {
    lrc: String,
    length: u32,
    tokens: Vec<i64>,
}

fn cases() -> Vec<Case> {
    let path = data_dir().join("parity.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("parity.json is JSON");
    v["cases"]
        .as_array()
        .expect("parity.json has cases")
        .iter()
        .map(|c| Case {
            lrc: c["lrc"].as_str().expect("lrc").to_string(),
            length: c["length"].as_u64().expect("length") as u32,
            tokens: c["tokens"]
                .as_array()
                .expect("tokens")
                .iter()
                .map(|t| t.as_i64().expect("integer token"))
                .collect(),
        })
        .collect()
}

/// `refrain lyrics --verbose` with the reference vocabulary: the token track and the placement
/// report (stderr), or the failure's stderr.
fn refrain_tokens(lrc: &Path, length: u32) -> Result<(Vec<i64>, String), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_refrain"))
        .args(["lyrics", "--lrc"])
        .arg(lrc)
        .args([
            "--length",
            &length.to_string(),
            "--vocab",
            VOCAB,
            "--verbose",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("REFRAIN_BUNDLE")
        .output()
        .expect("the refrain binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(format!("exit {}: {stderr}", out.status));
    }
    let tokens = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("stdout is not a JSON array: {e}"))?;
    Ok((tokens, stderr))
}

/// The LRC line Refrain placed over `frame`, from its `--verbose` report
/// (`line N: frames S..E (…)`), with the line's text.
fn placed_line(report: &str, lrc: &Path, frame: usize) -> Option<String> {
    report.lines().find_map(|l| {
        let rest = l.strip_prefix("line ")?;
        let (no, rest) = rest.split_once(": frames ")?;
        let (range, _) = rest.split_once(' ')?;
        let (s, e) = range.split_once("..")?;
        let (no, s, e): (usize, usize, usize) =
            (no.parse().ok()?, s.parse().ok()?, e.parse().ok()?);
        if !(s..e).contains(&frame) {
            return None;
        }
        let text = std::fs::read_to_string(lrc).ok()?;
        let line = text.lines().nth(no - 1)?.trim_end().to_string();
        Some(format!(
            "LRC line {no} {line:?}, placed by refrain at frames {s}..{e}"
        ))
    })
}

fn first_difference(expected: &[i64], actual: &[i64]) -> Option<usize> {
    (0..expected.len().min(actual.len()))
        .find(|&i| expected[i] != actual[i])
        .or_else(|| (expected.len() != actual.len()).then(|| expected.len().min(actual.len())))
}

/// The contiguous runs of non-zero tokens (the placed lines) as `(start, end)` frame ranges.
fn runs(tokens: &[i64]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &t) in tokens.iter().chain(std::iter::once(&0)).enumerate() {
        match (t != 0, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Describes where two tracks first differ: the frame, and the placed run around it in both.
fn describe(expected: &[i64], actual: &[i64]) -> String {
    if expected.len() != actual.len() {
        return format!("{} frames, expected {}", actual.len(), expected.len());
    }
    let Some(first) = (0..expected.len()).find(|&i| expected[i] != actual[i]) else {
        return "identical".into();
    };
    let around = |tokens: &[i64]| {
        runs(tokens)
            .into_iter()
            .find(|&(s, e)| s <= first && first < e)
            .or_else(|| runs(tokens).into_iter().find(|&(s, _)| s > first))
            .map(|(s, e)| format!("frames {s}..{e}: {:?}", &tokens[s..e]))
            .unwrap_or_else(|| "nothing".into())
    };
    let differing = (0..expected.len())
        .filter(|&i| expected[i] != actual[i])
        .count();
    format!(
        "{differing} frames differ, the first at frame {first} (expected {}, got {});\n  \
         expected {}\n  actual   {}",
        expected[first],
        actual[first],
        around(expected),
        around(actual)
    )
}

#[test]
fn lyric_tracks_match_the_reference() {
    if !vocab_available() {
        return;
    }
    let cases = cases();
    assert!(cases.len() >= 4, "parity.json has too few cases");
    let mut failures = Vec::new();
    for case in &cases {
        let lrc = data_dir().join(&case.lrc);
        let frames = if case.length == 95 {
            2048
        } else {
            case.length as usize * 44100 / 2048
        };
        assert_eq!(
            case.tokens.len(),
            frames,
            "{} at {} s",
            case.lrc,
            case.length
        );
        match refrain_tokens(&lrc, case.length) {
            Ok((tokens, _)) if tokens == case.tokens => {}
            Ok((tokens, report)) => {
                let line = first_difference(&case.tokens, &tokens)
                    .and_then(|f| placed_line(&report, &lrc, f))
                    .unwrap_or_else(|| "no line placed there by refrain".into());
                failures.push(format!(
                    "{} at {} s: {}\n  at {line}",
                    case.lrc,
                    case.length,
                    describe(&case.tokens, &tokens)
                ))
            }
            Err(e) => failures.push(format!("{} at {} s: {e}", case.lrc, case.length)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from the reference:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_lrc_file_has_a_case() {
    let cases = cases();
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".lrc") {
            assert!(
                cases.iter().any(|c| c.lrc == name),
                "{name} has no case in parity.json (run tools/lyrics_parity.py --case {name}:95 …)"
            );
            // Both models: the base one (which drops the last line) and a full length.
            assert!(cases.iter().any(|c| c.lrc == name && c.length == 95));
            assert!(cases.iter().any(|c| c.lrc == name && c.length > 95));
        }
    }
}

#[test]
fn describe_names_the_first_difference() {
    let expected = [0, 0, 5, 6, 2, 0, 0];
    let actual = [0, 0, 5, 7, 2, 0, 0];
    let d = describe(&expected, &actual);
    assert!(d.contains("frame 3 (expected 6, got 7)"), "{d}");
    assert!(d.contains("frames 2..5: [5, 6, 2]"), "{d}");
    assert_eq!(runs(&[1, 0, 2, 3, 0]), vec![(0, 1), (2, 4)]);
}
