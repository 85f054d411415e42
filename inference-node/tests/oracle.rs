//! Exact oracle tests of the whole pipeline on the analytic test bundle: the produced audio is
//! analysed back into per-frame latent values, and what reaches each frame is checked against
//! the LRC timing, the model rules, the decoding modes, edit mode and the style.

mod common;

use common::{generator, generator_f16, ort_available, Oracle};
use protocol::{ProgressEvent, Stage};
use refrain_inference::audio;
use refrain_inference::pipeline::{self, EditRequest, GenerateRequest};
use refrain_inference::style::StyleSource;
use refrain_inference::InferenceError;
use tokio_util::sync::CancellationToken;

fn frame(t: f64) -> usize {
    (t * 44100.0 / 2048.0) as usize
}

fn prompt(p: &str) -> StyleSource {
    StyleSource::Prompt(p.to_string())
}

fn run(req: &GenerateRequest) -> pipeline::GenerateOutput {
    generator()
        .generate(req, &CancellationToken::new(), &mut |_| {})
        .expect("generation succeeds")
}

/// Encodes one line with the bundle's vocabulary (tokens as the DiT sees them).
fn encode(text: &str) -> Vec<i64> {
    let g = generator();
    let enc = pipeline::line_encoder(g.bundle(), None).unwrap();
    enc.encode(text).unwrap()
}

#[test]
fn lines_start_at_their_timestamps_and_overflow_pushes_right() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let lines = [
        (
            2.00,
            "morning light is falling on the harbour and the boats are waking slowly one by one",
        ),
        (3.00, "hello world"), // starts inside the first line: pushed right
        (20.35, "sing it loud"),
        (41.07, "hold the line"),
    ];
    let lrc: String = lines
        .iter()
        .map(|(t, text)| format!("[{:02}:{:05.2}]{text}\n", (*t as u32) / 60, t % 60.0))
        .collect();
    let out = run(&GenerateRequest::new(lrc, prompt("pop"), 96));
    assert_eq!(out.model, "full");
    assert_eq!(out.frames, 2067);
    let song = &out.songs[0];
    assert_eq!(song.len(), 2067 * 2048 * 2);
    let pitches = o.pitches(&o.project(song));

    // Independent expectation: each line at int(t·44100/2048) or right after the previous one.
    let mut expected = vec![None; out.frames];
    let mut last_end = 0;
    let mut starts = Vec::new();
    for (t, text) in lines {
        let mut toks: Vec<i64> = encode(text)
            .into_iter()
            .map(|x| if x == 2 { 1 } else { x })
            .collect();
        toks.push(2);
        let start = frame(t).max(last_end);
        starts.push(start);
        for (i, &tok) in toks.iter().enumerate() {
            expected[start + i] = o.channel(tok);
        }
        last_end = start + toks.len();
    }
    assert_eq!(starts[0], frame(2.0));
    assert!(starts[1] > frame(3.0), "line 2 must be pushed right");
    assert_eq!(starts[2], frame(20.35));
    assert_eq!(starts[3], frame(41.07));
    for &s in &starts {
        assert_eq!(pitches[s - 1].is_some(), expected[s - 1].is_some());
        assert_eq!(pitches[s], expected[s], "line start at frame {s}");
    }
    assert_eq!(pitches, expected);
}

#[test]
fn base_model_drops_its_last_kept_line() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let lrc = "[00:05.00]first line here\n[00:15.00]second line here\n[00:30.00]third line here\n[01:40.00]after the end\n";
    let out = run(&GenerateRequest::new(lrc, prompt("rock"), 95));
    assert_eq!((out.model.as_str(), out.frames), ("base", 2048));
    let pitches = o.pitches(&o.project(&out.songs[0]));
    let second = encode("second line here").len() + 1;
    assert!(pitches[frame(5.0)].is_some());
    assert!(pitches[frame(15.0)].is_some());
    assert!(
        pitches[frame(15.0) + second..].iter().all(Option::is_none),
        "third line must be dropped"
    );
    let dropped: Vec<usize> = out.lyrics.track.dropped.iter().map(|d| d.0).collect();
    assert_eq!(dropped, vec![3, 4]);
}

#[test]
fn chunked_and_unchunked_decoding_agree() {
    if !ort_available() {
        return;
    }
    let lrc = std::fs::read_to_string(common::workspace().join("examples/demo.lrc")).unwrap();
    for seconds in [95, 130] {
        let mut req = GenerateRequest::new(lrc.clone(), prompt("folk"), seconds);
        req.chunked = false;
        let a = run(&req);
        req.chunked = true;
        let b = run(&req);
        assert_eq!(a.songs[0].len(), b.songs[0].len());
        let worst = a.songs[0]
            .iter()
            .zip(&b.songs[0])
            .map(|(x, y)| (*x as f32 - *y as f32).abs() / 32767.0)
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{seconds} s: max difference {worst}");
    }
}

#[test]
fn edit_mode_keeps_frames_outside_the_segments() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let original = run(&GenerateRequest::new(
        "[00:02.00]the first song has these words\n[00:12.00]and then some more of them\n[00:40.00]until the end\n[01:00.00]closing line\n",
        prompt("jazz"),
        95,
    ));
    let wav = audio::wav_bytes_i16(&original.songs[0], 2, 44100).unwrap();
    let reference = audio::decode(&wav, Some("wav"), 600.0).unwrap();
    let segments = pipeline::parse_edit_segments("[[10, 20], [50.5, -1]]").unwrap();
    let mut req = GenerateRequest::new(
        "[00:02.00]the first song has these words\n[00:11.00]brand new words go right here\n[00:51.00]a different ending now\n[01:20.00]closing line\n",
        prompt("jazz"),
        95,
    );
    req.edit = Some(EditRequest {
        reference,
        segments,
    });
    let edited = run(&req);

    let a = o.project(&original.songs[0]);
    let b = o.project(&edited.songs[0]);
    let kept = |f: usize| !(frame(10.0)..frame(20.0)).contains(&f) && f < frame(50.5);
    // The two songs are normalised on their own peaks: fit the gain on the kept frames.
    let (mut num, mut den) = (0f64, 0f64);
    for f in (0..a.len()).filter(|&f| kept(f)) {
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
    for f in (0..a.len()).filter(|&f| kept(f)) {
        for c in 0..64 {
            let d = (a[f][c] - gain * b[f][c]).abs();
            assert!(
                d < 2e-3 * peak,
                "frame {f} channel {c}: {} vs {}",
                a[f][c],
                gain * b[f][c]
            );
        }
    }
    // Inside the segments the new lyrics sound.
    let pitches = o.pitches(&b);
    let new_line = encode("brand new words go right here");
    assert_eq!(pitches[frame(11.0)], o.channel(new_line[0]));
    assert_eq!(o.pitches(&a)[frame(11.0)], None);
}

#[test]
fn the_style_prompt_changes_only_the_style_band() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let lrc = "[00:03.00]one two three four\n[00:09.00]five six seven\n[00:20.00]the end\n";
    let a = o.project(
        &run(&GenerateRequest::new(
            lrc,
            prompt("calm acoustic guitar ballad"),
            96,
        ))
        .songs[0],
    );
    let b = o.project(
        &run(&GenerateRequest::new(
            lrc,
            prompt("aggressive heavy metal drums"),
            96,
        ))
        .songs[0],
    );
    // Fit the gain on the lyric band, then compare band by band.
    let lyric = 0..o.lyric_channels;
    let (mut num, mut den) = (0f64, 0f64);
    for (fa, fb) in a.iter().zip(&b) {
        for c in lyric.clone() {
            num += fa[c] as f64 * fb[c] as f64;
            den += fb[c] as f64 * fb[c] as f64;
        }
    }
    let gain = (num / den) as f32;
    let peak = a
        .iter()
        .flat_map(|f| f[lyric.clone()].iter())
        .fold(0f32, |m, v| m.max(v.abs()));
    let mut style_diff = 0f32;
    for (fa, fb) in a.iter().zip(&b) {
        for c in lyric.clone() {
            assert!(
                (fa[c] - gain * fb[c]).abs() < 2e-3 * peak,
                "lyric band changed"
            );
        }
        for c in o.style.clone() {
            style_diff = style_diff.max((fa[c] - gain * fb[c]).abs());
        }
    }
    assert!(
        style_diff > 0.02 * peak,
        "style band must change: {style_diff} vs peak {peak}"
    );
}

#[test]
fn f16_and_f32_dits_give_the_same_tokens() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let lrc = std::fs::read_to_string(common::workspace().join("examples/demo.lrc")).unwrap();
    let req = GenerateRequest::new(lrc, prompt("pop"), 95);
    let a = run(&req);
    let b = generator_f16()
        .generate(&req, &CancellationToken::new(), &mut |_| {})
        .unwrap();
    let (pa, pb) = (
        o.pitches(&o.project(&a.songs[0])),
        o.pitches(&o.project(&b.songs[0])),
    );
    assert_eq!(pa, o.expected(&a.lyrics.track.tokens));
    assert_eq!(pa, pb);
}

#[test]
fn same_seed_same_bytes_and_variants() {
    if !ort_available() {
        return;
    }
    let mut req = GenerateRequest::new("[00:01.00]la la la\n", prompt("pop"), 95);
    req.seed = 42;
    req.variants = 2;
    let a = run(&req);
    let b = run(&req);
    assert_eq!(a.songs.len(), 2);
    assert_eq!(a.songs, b.songs);
}

#[test]
fn progress_is_step_by_step_and_cancellation_stops_between_steps() {
    if !ort_available() {
        return;
    }
    let req = GenerateRequest::new("[00:01.00]la la la\n", prompt("pop"), 95);
    let mut events: Vec<ProgressEvent> = Vec::new();
    generator()
        .generate(&req, &CancellationToken::new(), &mut |e| events.push(e))
        .unwrap();
    let steps: Vec<u32> = events
        .iter()
        .filter(|e| e.stage == Stage::Sampling)
        .map(|e| e.step)
        .collect();
    assert_eq!(steps, (1..=31).collect::<Vec<_>>());
    assert!(events
        .iter()
        .filter(|e| e.stage == Stage::Sampling)
        .all(|e| e.total == 31));
    assert!(events.windows(2).all(|w| w[0].percent <= w[1].percent));
    assert!(events.iter().any(|e| e.stage == Stage::Decode));
    let last = events.last().unwrap();
    assert_eq!((last.stage, last.percent), (Stage::Done, 100.0));
    assert!(events
        .iter()
        .filter(|e| e.stage == Stage::Sampling)
        .skip(1)
        .all(|e| e.eta_seconds.is_some()));

    let cancel = CancellationToken::new();
    let mut seen = 0;
    let err = generator()
        .generate(&req, &cancel, &mut |e| {
            if e.stage == Stage::Sampling {
                seen = e.step;
                if e.step == 5 {
                    cancel.cancel();
                }
            }
        })
        .unwrap_err();
    assert!(matches!(err, InferenceError::Cancelled), "{err}");
    assert_eq!(seen, 5);
}

#[test]
fn style_from_reference_audio() {
    if !ort_available() {
        return;
    }
    let tone = |secs: f64, hz: f64| {
        let n = (secs * 44100.0) as usize;
        let mono: Vec<f32> = (0..n)
            .map(|i| (0.3 * (2.0 * std::f64::consts::PI * hz * i as f64 / 44100.0).sin()) as f32)
            .collect();
        audio::Decoded {
            sample_rate: 44100,
            channels: vec![mono.clone(), mono],
        }
    };
    let req = GenerateRequest::new(
        "[00:01.00]la la la\n",
        StyleSource::Audio(tone(12.0, 440.0)),
        95,
    );
    let out = run(&req);
    assert_eq!(out.songs[0].len(), 2048 * 2048 * 2);
    let short = GenerateRequest::new("", StyleSource::Audio(tone(5.0, 440.0)), 95);
    let err = generator()
        .generate(&short, &CancellationToken::new(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(err, InferenceError::Audio(_)), "{err}");
    assert!(err.to_string().contains("short"), "{err}");
}

#[test]
fn bad_requests_are_typed_errors_naming_the_problem() {
    if !ort_available() {
        return;
    }
    let base = || GenerateRequest::new("[00:01.00]la la la\n", prompt("pop"), 95);
    let cases: Vec<(GenerateRequest, &str)> = vec![
        (
            GenerateRequest {
                seconds: 60,
                ..base()
            },
            "audio length 60",
        ),
        (
            GenerateRequest {
                seconds: 300,
                ..base()
            },
            "audio length 300",
        ),
        (
            GenerateRequest {
                steps: Some(1),
                ..base()
            },
            "steps",
        ),
        (
            GenerateRequest {
                cfg_strength: Some(f32::NAN),
                ..base()
            },
            "cfg_strength",
        ),
        (
            GenerateRequest {
                variants: 0,
                ..base()
            },
            "batch_infer_num",
        ),
        (
            GenerateRequest {
                variants: 6,
                ..base()
            },
            "batch_infer_num",
        ),
        (
            GenerateRequest {
                style: prompt("   "),
                ..base()
            },
            "prompt is empty",
        ),
        (
            GenerateRequest {
                style: prompt(&"rock ".repeat(300)),
                ..base()
            },
            "characters",
        ),
        (
            GenerateRequest {
                // Chinese is sung (the test bundle's Mandarin lexicon); a bad timestamp is not
                lyrics: "[00:01.00]你好世界\n[00:75.00]月亮\n".into(),
                ..base()
            },
            "line 2",
        ),
        (
            GenerateRequest {
                lyrics: format!("[00:01.00]{}\n", "la ".repeat(400)),
                ..base()
            },
            "characters",
        ),
    ];
    for (req, needle) in cases {
        let err = generator()
            .generate(&req, &CancellationToken::new(), &mut |_| {})
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            err.to_string().contains(needle),
            "expected {needle:?} in: {err}"
        );
    }
    let mut edit = base();
    edit.edit = Some(EditRequest {
        reference: audio::Decoded {
            sample_rate: 44100,
            channels: vec![vec![0.1; 44100 * 10]; 2],
        },
        segments: vec![(-1.0, 5.0)],
    });
    let err = generator()
        .generate(&edit, &CancellationToken::new(), &mut |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("shorter than"), "{err}");
}

#[test]
fn instrumental_and_digit_only_lines() {
    if !ort_available() {
        return;
    }
    let o = Oracle::load();
    let out = run(&GenerateRequest::new("", prompt("ambient"), 95));
    assert!(out.lyrics.track.tokens.iter().all(|&t| t == 0));
    let coeffs = o.project(&out.songs[0]);
    let band_max = |r: std::ops::Range<usize>| {
        coeffs
            .iter()
            .flat_map(|f| f[r.clone()].iter())
            .fold(0f32, |m, v| m.max(v.abs()))
    };
    let (lyric, style) = (band_max(0..o.lyric_channels), band_max(o.style.clone()));
    assert!(style > 0.05, "the style band carries the song: {style}");
    assert!(
        lyric < 1e-3 * style,
        "an instrumental has a silent lyric band: {lyric}"
    );
    let out = run(&GenerateRequest::new(
        "[00:01.00]...\n[00:03.00]hello\n",
        prompt("ambient"),
        95,
    ));
    assert_eq!(out.lyrics.skipped.len(), 1);
    assert_eq!(out.lyrics.skipped[0].line_no, 1);
}
