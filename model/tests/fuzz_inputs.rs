//! Property-based fuzzing of the inputs clients control that the model crate reads: LRC
//! lyrics and uploaded audio. Whatever the bytes, the parser and the decoder return a value or
//! an error — never a panic, a hang or samples that are not finite.
//!
//! CI runs the default number of cases (`PROPTEST_CASES`, 256 per property); a longer run is
//! `PROPTEST_CASES=100000 cargo test --release -p refrain-model --test fuzz_inputs`. A failing
//! input is shrunk and saved by proptest under `model/tests/fuzz_inputs.proptest-regressions`
//! (commit that file: it is replayed first on every run), and gets a named regression test
//! here once fixed.

use proptest::prelude::*;
use refrain_model::audio::{decode, wav_bytes_i16};
use refrain_model::lyrics::lrc::{parse, LyricsLimits};

/// Lines that look like LRC: timestamps of every shape (valid, impossible, malformed),
/// metadata tags, section markers, text in several scripts, empty lines.
fn lrc_like() -> impl Strategy<Value = String> {
    let tag = prop_oneof![
        (0u32..200, 0u32..100, 0u32..1000).prop_map(|(m, s, f)| format!("[{m:02}:{s:02}.{f:02}]")),
        (0u32..10, 0u32..10).prop_map(|(m, s)| format!("[{m}:{s}]")),
        "\\[[0-9:.]{0,8}\\]",
        "\\[[a-z]{0,4}:[^\\]\\n]{0,10}\\]",
        Just("[".to_string()),
        Just("]".to_string()),
        Just(String::new()),
    ];
    let text = prop_oneof![
        "[a-zA-Z ,.'!?-]{0,40}",
        "[\\p{Han}，。！？ ]{0,20}",
        "\\PC{0,30}",
        Just("[Chorus]".to_string()),
    ];
    prop::collection::vec((tag.clone(), tag, text), 0..40).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(a, b, t)| format!("{a}{b}{t}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// A small valid stereo WAV.
fn wav(frames: usize) -> Vec<u8> {
    let samples: Vec<i16> = (0..frames * 2)
        .map(|i| (i as i16).wrapping_mul(97))
        .collect();
    wav_bytes_i16(&samples, 2, 44_100).expect("a WAV")
}

proptest! {
    #[test]
    fn lrc_parser_takes_any_text(text in "\\PC{0,400}") {
        let _ = parse(&text, &LyricsLimits::default());
    }

    #[test]
    fn lrc_parser_takes_lrc_like_text(text in lrc_like()) {
        if let Ok(parsed) = parse(&text, &LyricsLimits::default()) {
            for line in &parsed.lines {
                prop_assert!(line.seconds.is_finite() && line.seconds >= 0.0, "{line:?}");
                prop_assert!(line.line_no >= 1);
            }
        }
    }

    #[test]
    fn lrc_parser_enforces_its_limits(text in lrc_like()) {
        let limits = LyricsLimits { max_bytes: 200, max_lines: 5, max_line_chars: 20 };
        if let Ok(parsed) = parse(&text, &limits) {
            prop_assert!(text.len() <= limits.max_bytes);
            prop_assert!(parsed.lines.len() <= limits.max_lines);
        }
    }

    #[test]
    fn decoder_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096),
                               hint in prop::option::of(prop_oneof![Just("wav"), Just("mp3"), Just("flac"), Just("ogg")])) {
        if let Ok(decoded) = decode(&bytes, hint, 30.0) {
            for channel in &decoded.channels {
                prop_assert!(channel.iter().all(|s| s.is_finite()));
            }
        }
    }

    /// A valid WAV with some bytes overwritten (the header included) and maybe cut short.
    #[test]
    fn decoder_takes_corrupted_wavs(edits in prop::collection::vec((0usize..2000, any::<u8>()), 1..12),
                                    cut in prop::option::of(0usize..2000)) {
        let mut bytes = wav(400);
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.min(bytes.len()));
        }
        if let Ok(decoded) = decode(&bytes, Some("wav"), 30.0) {
            prop_assert!(decoded.duration_seconds() <= 30.0 + 1e-6);
            for channel in &decoded.channels {
                prop_assert!(channel.iter().all(|s| s.is_finite()));
            }
        }
    }
}

/// The uncorrupted WAV decodes (so the corruption property tests something real).
#[test]
fn the_base_wav_decodes() {
    let decoded = decode(&wav(400), Some("wav"), 30.0).expect("decodes");
    assert_eq!(decoded.channels.len(), 2);
    assert_eq!(decoded.channels[0].len(), 400);
}

/// Found by `decoder_takes_corrupted_wavs`: a `fmt ` chunk with 65,535 channels of 32 bits
/// made symphonia's block-align check overflow and panic. Now a decode error.
#[test]
fn a_wav_header_that_overflows_the_decoder_is_an_error() {
    let mut bytes = wav(400);
    bytes[22..24].copy_from_slice(&u16::MAX.to_le_bytes()); // channels
    bytes[34..36].copy_from_slice(&32u16.to_le_bytes()); // bits per sample
    assert!(decode(&bytes, Some("wav"), 30.0).is_err());
}
