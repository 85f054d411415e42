//! End to end: a Mandarin (and mixed Chinese/English) LRC makes a song through the DiffRhythm
//! server API's `POST /generate` on the embedded deployment with the committed test bundle,
//! whose own small Mandarin lexicon (models/test-bundle/mandarin) lets Chinese lines through the
//! same G2P as a real bundle. The song is read back with the test bundle's oracle: every frame
//! of the lyric track the request should get (computed with `refrain_model`, as admission does)
//! sounds its token's lyric channel, and every pad frame leaves the lyric channels quiet, so
//! the Chinese lines are timed at their timestamps.
//!
//! Without ONNX Runtime it is skipped with a message, except in CI, where it fails.

mod support;

use std::f64::consts::PI;
use std::io::Cursor;
use std::time::Duration;

use refrain_model::bundle::Bundle;
use refrain_model::lyrics::lrc::LyricsLimits;
use refrain_model::track;
use reqwest::blocking::multipart::Form;
use support::spec::PROMPT;
use support::*;

const LRC: &str = "[00:02.00]你好，我们来了\n\
                   [00:09.50]月亮的光，moonlight 的梦想\n\
                   [00:18.00]一天一天，不来了\n\
                   [00:26.00]明天 I will be there\n\
                   [00:40.00]你好\n";

const LYRIC_CHANNELS: usize = 48;
const HOP: usize = 2048;

/// The projection of each latent frame of the left channel onto the test bundle's 48 lyric
/// sinusoids (bin 8 + 4c of a 2048-sample hop).
fn lyric_coefficients(wav: &[u8]) -> Vec<[f64; LYRIC_CHANNELS]> {
    let mut reader = hound::WavReader::new(Cursor::new(wav)).expect("a WAV");
    let left: Vec<f64> = reader
        .samples::<i16>()
        .step_by(2)
        .map(|s| f64::from(s.expect("a sample")))
        .collect();
    let table: Vec<Vec<f64>> = (0..LYRIC_CHANNELS)
        .map(|c| {
            let k = (8 + 4 * c) as f64;
            (0..HOP)
                .map(|n| (2.0 * PI * k * n as f64 / HOP as f64).sin())
                .collect()
        })
        .collect();
    left.chunks_exact(HOP)
        .map(|frame| {
            let mut out = [0f64; LYRIC_CHANNELS];
            for (c, basis) in table.iter().enumerate() {
                out[c] = frame
                    .iter()
                    .zip(basis)
                    .map(|(x, b)| x * b)
                    .sum::<f64>()
                    .abs();
            }
            out
        })
        .collect()
}

#[test]
fn a_mandarin_lrc_makes_a_song_through_post_generate() {
    let Some(app) = TestApp::embedded().start() else {
        return;
    };
    let bundle = Bundle::load(&workspace().join("models/test-bundle")).expect("test bundle");
    let encoder = track::line_encoder(&bundle, None).expect("the test bundle's encoder");
    let expected = track::lyric_track(&bundle, &encoder, LRC, 95, &LyricsLimits::default())
        .expect("admission accepts the lyrics")
        .track;
    // every line is placed (the base model drops the last one) and sings something
    assert_eq!(expected.placed.len(), 4, "{:?}", expected.placed);
    for p in &expected.placed {
        assert!(p.end_frame - p.start_frame >= 2, "line {} sings", p.line_no);
    }

    let form = Form::new()
        .text("ref_prompt", PROMPT)
        .text("audio_length", "95")
        .text("lrc", LRC)
        .text("seed", "12");
    let api = app.api();
    let (_id, url) = api.submit(form);
    let wav = match api.wait(&url, Duration::from_secs(180)) {
        Done::Wav(wav) => wav,
        other => panic!("the job did not make a song: {other:?}"),
    };
    assert_song_wav(&wav, 2048);

    let coeffs = lyric_coefficients(&wav);
    let loudest = coeffs.iter().flatten().fold(0f64, |m, &v| m.max(v));
    assert!(loudest > 0.0, "the song has lyric sounds");
    for (frame, &token) in expected.tokens.iter().enumerate() {
        let f = &coeffs[frame];
        let (channel, level) =
            f.iter()
                .enumerate()
                .fold((0, 0f64), |a, (c, &v)| if v > a.1 { (c, v) } else { a });
        if token == 0 {
            assert!(
                level < loudest * 0.05,
                "pad frame {frame} is quiet: {level}"
            );
        } else {
            assert_eq!(
                channel,
                (token as usize - 1) % LYRIC_CHANNELS,
                "frame {frame} sounds token {token}"
            );
            assert!(level > loudest * 0.5, "frame {frame} is loud: {level}");
        }
    }
    // 你好 starts at 2 s: frame int(2 * 44100 / 2048) = 43 sings n (test vocabulary 24, + 1)
    assert_eq!(expected.tokens[43], 25);
}
