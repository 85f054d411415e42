//! Golden test of the English G2P: every line of `tests/data/g2p_golden.json` must encode to
//! exactly the token ids the Python reference (DiffRhythm `chn_eng_g2p` + `CNENTokenizer`'s +1,
//! phonemizer 3.3.0, espeak-ng) produced; lines the reference rejects must be rejected.
//! Regenerate the data with `tools/g2p_golden.py --diffrhythm DIR`; to check another file made
//! by that script (a larger corpus, say), point `REFRAIN_G2P_GOLDEN` at it.

use std::path::Path;

use refrain_inference::lyrics::g2p::{espeak, EnglishG2p, G2p, LineEncoder};
use refrain_inference::lyrics::vocab::Vocab;
use refrain_inference::lyrics::LyricsError;
use serde_json::Value;

const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/reference/diffrhythm-vocab.json"
);
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/g2p_golden.json");

fn encoder() -> Option<LineEncoder> {
    if !Path::new(VOCAB).exists() {
        if std::env::var_os("CI").is_some() {
            panic!("the reference vocabulary {VOCAB} is missing (required when CI is set)");
        }
        eprintln!("skipped: the reference vocabulary {VOCAB} is missing");
        return None;
    }
    let vocab = Vocab::load(Path::new(VOCAB)).expect("reference vocabulary");
    assert_eq!(
        vocab.len(),
        363,
        "the DiffRhythm vocabulary has 363 symbols"
    );
    Some(LineEncoder::new(vocab, &["en".to_string()]).expect("English encoder"))
}

/// `chn_eng_g2p`'s phoneme string for a line that is one English run.
fn reference_phoneme_string(text: &str) -> Result<String, LyricsError> {
    let joined = EnglishG2p.phonemes(text)?.join("|");
    Ok(match joined.strip_suffix('_') {
        Some(without) => without.to_string(),
        None => joined + "|",
    })
}

#[test]
fn english_lines_match_the_reference() {
    let Some(encoder) = encoder() else { return };
    let path = std::env::var("REFRAIN_G2P_GOLDEN").unwrap_or_else(|_| GOLDEN.to_string());
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file"))
        .expect("golden JSON");
    let produced_with = &golden["produced_with"];
    let cases = golden["cases"].as_array().expect("cases");
    assert!(cases.len() >= 40, "at least 40 golden lines");

    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let got = encoder.encode(text);
        if let Some(error) = case.get("error") {
            let has_cjk = text.chars().any(|c| ('\u{4e00}'..='\u{9fa5}').contains(&c));
            match got {
                Err(LyricsError::UnsupportedLanguage { .. }) if has_cjk => {}
                Err(LyricsError::Unpronounceable { .. }) if !has_cjk => {}
                other => failures.push(format!(
                    "{text:?}: the reference fails ({error}), got {other:?}"
                )),
            }
            continue;
        }
        let want: Vec<i64> = case["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_i64().expect("id"))
            .collect();
        match got {
            Ok(ids) if ids == want => {}
            other => failures.push(format!("{text:?}:\n   want {want:?}\n    got {other:?}")),
        }
        let phonemes = case["phonemes"].as_str().expect("phonemes");
        match reference_phoneme_string(text) {
            Ok(p) if p == phonemes => {}
            other => failures.push(format!(
                "{text:?}: phonemes\n   want {phonemes:?}\n    got {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden lines differ (goldens from {produced_with}; espeak-ng here: {:?}):\n{}",
        failures.len(),
        cases.len(),
        espeak::version(),
        failures.join("\n")
    );
}
