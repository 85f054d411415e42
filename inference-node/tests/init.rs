//! Starting the sampler from a song (init, SDEdit for flow matching: Refrain's addition, the
//! reference has no such mode), checked with the analytic bundle's oracle: strength 0 runs no
//! sampler step and gives the song back; strength 1 is a fresh generation, byte for byte, with
//! the same seed; an intermediate strength runs only the steps after `t0 = 1 − strength`
//! (counted in the progress events) — and, since the analytic DiT's last Euler step lands on its
//! target from any start, ends on the fresh generation's song. A song shorter than the new one
//! is refused.

mod common;

use common::{generator, ort_available, Oracle};
use protocol::{ProgressEvent, Stage};
use refrain_inference::audio;
use refrain_inference::pipeline::{self, GenerateRequest, InitRequest};
use refrain_inference::style::StyleSource;
use tokio_util::sync::CancellationToken;

const LYRICS: &str = "[00:05.00]the first song has these words\n[00:30.00]and then some more of them\n[01:10.00]until the end\n";

/// The output and the number of sampler steps its progress reported.
fn run(req: &GenerateRequest) -> (pipeline::GenerateOutput, usize) {
    let mut events: Vec<ProgressEvent> = Vec::new();
    let out = generator()
        .generate(req, &CancellationToken::new(), &mut |e| events.push(e))
        .expect("generation succeeds");
    let steps = events.iter().filter(|e| e.stage == Stage::Sampling).count();
    (out, steps)
}

/// Asserts that `b` is `a` up to a gain (each song is normalised on its own peak).
fn same_up_to_gain(o: &Oracle, a: &[i16], b: &[i16]) {
    let (a, b) = (o.project(a), o.project(b));
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (fa, fb) in a.iter().zip(&b) {
        for c in 0..64 {
            num += fa[c] as f64 * fb[c] as f64;
            den += fb[c] as f64 * fb[c] as f64;
        }
    }
    let gain = (num / den) as f32;
    let peak = a
        .iter()
        .flat_map(|f| f.iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    for (f, (fa, fb)) in a.iter().zip(&b).enumerate() {
        for c in 0..64 {
            let d = (fa[c] - gain * fb[c]).abs();
            assert!(
                d < 2e-3 * peak,
                "frame {f} channel {c}: {} vs {}",
                fa[c],
                fb[c]
            );
        }
    }
}

#[test]
fn init_strength_runs_the_steps_after_t0_from_the_re_noised_song() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let (source, steps) = run(&GenerateRequest::new(
        LYRICS,
        StyleSource::Prompt("jazz".into()),
        95,
    ));
    assert_eq!(steps, 31);
    let wav = audio::wav_bytes_i16(&source.songs[0], 2, 44100).unwrap();
    let song = audio::decode(&wav, Some("wav"), 600.0).unwrap();

    // The same lyrics in a new style, seed 7.
    let mut fresh = GenerateRequest::new(LYRICS, StyleSource::Prompt("rock".into()), 95);
    fresh.seed = 7;
    let with = |strength: f32| {
        let mut req = fresh.clone();
        req.init = Some(InitRequest {
            song: song.clone(),
            strength,
        });
        req
    };
    let (new, new_steps) = run(&fresh);
    assert_eq!(new_steps, 31);
    // The new style is audible: the style channels differ from the source's.
    let style_gap = o.project(&new.songs[0])[100][48..]
        .iter()
        .zip(&o.project(&source.songs[0])[100][48..])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(style_gap > 1e-2, "{style_gap}");

    // Strength 1: a fresh generation with the same seed, byte for byte.
    let (one, one_steps) = run(&with(1.0));
    assert_eq!(one_steps, 31);
    assert_eq!(one.songs, new.songs);

    // Strength 0: no step runs, and the song comes back (through the VAE encoder and decoder,
    // up to the peak normalisation).
    let (zero, zero_steps) = run(&with(0.0));
    assert_eq!(zero_steps, 0);
    same_up_to_gain(&o, &source.songs[0], &zero.songs[0]);

    // Strength 0.5: t0 = 0.5, the first grid point at or after it is 16/31, so 15 of the 31
    // steps run; the analytic DiT then lands on the fresh generation's target.
    let (half, half_steps) = run(&with(0.5));
    assert_eq!(half_steps, 15);
    same_up_to_gain(&o, &new.songs[0], &half.songs[0]);

    // A song shorter than the one being made is refused.
    let short = audio::decode(
        &audio::wav_bytes_i16(&source.songs[0][..2 * 44100 * 60], 2, 44100).unwrap(),
        Some("wav"),
        600.0,
    )
    .unwrap();
    let mut req = fresh.clone();
    req.init = Some(InitRequest {
        song: short,
        strength: 0.5,
    });
    let err = generator()
        .generate(&req, &CancellationToken::new(), &mut |_| {})
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    assert!(err.to_string().contains("cover every frame"), "{err}");
}
