//! Extending a song through edit mode, checked exactly with the analytic bundle's oracle: a
//! reference shorter than the song is accepted when everything after a point is regenerated;
//! the kept start is the reference's, the regenerated rest (also past the reference's end)
//! sings the new lyrics; a reference that is too short for kept frames is refused.

mod common;

use common::{generator, ort_available, Oracle};
use refrain_inference::audio;
use refrain_inference::pipeline::{self, EditRequest, GenerateRequest};
use refrain_inference::style::StyleSource;
use tokio_util::sync::CancellationToken;

fn frame(t: f64) -> usize {
    (t * 44100.0 / 2048.0) as usize
}

fn run(req: &GenerateRequest) -> pipeline::GenerateOutput {
    generator()
        .generate(req, &CancellationToken::new(), &mut |_| {})
        .expect("generation succeeds")
}

#[test]
fn a_95_s_song_extended_to_120_s_keeps_its_start_and_sings_the_new_end() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let style = StyleSource::Prompt("jazz".into());
    let original = run(&GenerateRequest::new(
        "[00:05.00]the first song has these words\n[00:30.00]and then some more of them\n[01:10.00]until the end\n[01:30.00]closing\n",
        style.clone(),
        95,
    ));
    let wav = audio::wav_bytes_i16(&original.songs[0], 2, 44100).unwrap();
    let reference = audio::decode(&wav, Some("wav"), 600.0).unwrap();
    let mut req = GenerateRequest::new(
        "[00:05.00]the first song has these words\n[00:30.00]and then some more of them\n[01:05.00]brand new words go right here\n[01:40.00]far past the old end\n",
        style,
        120,
    );
    req.edit = Some(EditRequest {
        reference: reference.clone(),
        segments: vec![(60.0, -1.0)],
    });
    let extended = run(&req);
    assert_eq!(extended.frames, frame(120.0));

    let a = o.project(&original.songs[0]);
    let b = o.project(&extended.songs[0]);
    let kept = 0..frame(60.0);
    let (mut num, mut den) = (0f64, 0f64);
    for f in kept.clone() {
        for c in 0..64 {
            num += a[f][c] as f64 * b[f][c] as f64;
            den += b[f][c] as f64 * b[f][c] as f64;
        }
    }
    let gain = (num / den) as f32;
    let peak = a
        .iter()
        .flat_map(|f| f.iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    for f in kept {
        for c in 0..64 {
            let d = (a[f][c] - gain * b[f][c]).abs();
            assert!(d < 2e-3 * peak, "frame {f} channel {c}");
        }
    }
    let enc = pipeline::line_encoder(generator().bundle(), None).unwrap();
    let pitches = o.pitches(&b);
    let first = |text: &str| o.channel(enc.encode(text).unwrap()[0]);
    assert_eq!(pitches[frame(65.0)], first("brand new words go right here"));
    assert_eq!(pitches[frame(100.0)], first("far past the old end"));
    // The old song sang something else there.
    assert_ne!(o.pitches(&a)[frame(65.0)], pitches[frame(65.0)]);

    // Keeping frames the reference does not have is refused, naming the point.
    let mut keep_tail = req.clone();
    keep_tail.edit = Some(EditRequest {
        reference,
        segments: vec![(60.0, 100.0)],
    });
    let err = generator()
        .generate(&keep_tail, &CancellationToken::new(), &mut |_| {})
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(
        err.to_string().contains("regenerate everything after"),
        "{err}"
    );
}
