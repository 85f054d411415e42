//! The Riffusion-style API on the real binary with real ONNX Runtime and the analytic test
//! bundle, following the spec's workflow: generate two takes from structured lyrics, poll the
//! feed to `success`, upload a take, then inpaint and extend it. The oracle (each 2048-sample
//! frame is an exact sum of the bundle's 64 sinusoids) checks that the kept spans are the
//! source's and that the regenerated spans sing the new lyrics, where the automatic timing put
//! them; `swap_vocals` is refused with its reason. `swap_sound` runs end to end on both
//! deployments (the embedded one and NATS with a `refrain node`): its takes start from the
//! source re-noised and run only the sampler steps after `t0 = 1 − strength` (counted in
//! their progress events), keep the source's length and lyrics and take the new style.

mod support;

use std::time::{Duration, Instant};

use refrain_inference::bundle::Bundle;
use refrain_inference::pipeline::line_encoder;
use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};
use support::app::TestApp;
use support::events::EventStream;
use support::http::local_client;
use support::prereq::workspace;

const HOP: usize = 2048;
const LYRIC_CHANNELS: usize = 48;

fn frame(seconds: f64) -> usize {
    (seconds * 44100.0 / HOP as f64) as usize
}

/// Every frame of the left channel projected onto the bundle's 64 sinusoids (bin 8 + 4c).
fn project(wav: &[u8]) -> Vec<[f32; 64]> {
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a WAV");
    let left: Vec<f32> = reader
        .samples::<i16>()
        .step_by(2)
        .map(|s| s.unwrap() as f32 / 32767.0)
        .collect();
    let tables: Vec<Vec<f32>> = (0..64)
        .map(|c| {
            let k = 8 + 4 * c;
            (0..HOP)
                .map(|n| (std::f64::consts::TAU * (k * n % HOP) as f64 / HOP as f64).sin() as f32)
                .collect()
        })
        .collect();
    left.chunks_exact(HOP)
        .map(|f| {
            let mut out = [0f32; 64];
            for (c, t) in tables.iter().enumerate() {
                out[c] = f.iter().zip(t).map(|(a, b)| a * b).sum::<f32>() * 2.0 / HOP as f32;
            }
            out
        })
        .collect()
}

/// The loudest lyric channel of each frame, `None` where the lyric band is silent.
fn pitches(coeffs: &[[f32; 64]]) -> Vec<Option<usize>> {
    let band = |f: &[f32; 64]| {
        f[..LYRIC_CHANNELS]
            .iter()
            .enumerate()
            .map(|(c, v)| (c, v.abs()))
            .fold((0, 0f32), |a, b| if b.1 > a.1 { b } else { a })
    };
    let loudest = coeffs.iter().map(|f| band(f).1).fold(0f32, f32::max);
    coeffs
        .iter()
        .map(|f| {
            let (c, v) = band(f);
            (v > loudest / 2.0).then_some(c)
        })
        .collect()
}

/// The lyric channel the first phoneme of `line` sounds on.
fn first_channel(line: &str) -> Option<usize> {
    let bundle = Bundle::load(&workspace().join("models/test-bundle")).expect("test bundle");
    let tokens = line_encoder(&bundle, None).unwrap().encode(line).unwrap();
    Some((tokens[0] as usize - 1) % LYRIC_CHANNELS)
}

/// Asserts `b` equals `a` (up to the songs' own peak normalisation) on `frames`.
fn assert_kept(a: &[[f32; 64]], b: &[[f32; 64]], frames: impl Iterator<Item = usize> + Clone) {
    let (mut num, mut den) = (0f64, 0f64);
    for f in frames.clone() {
        for c in 0..64 {
            num += a[f][c] as f64 * b[f][c] as f64;
            den += b[f][c] as f64 * b[f][c] as f64;
        }
    }
    let gain = (num / den) as f32;
    let peak = a.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
    for f in frames {
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
}

/// The loudest style channel (the bundle's channels 48–63) at `seconds`.
fn style_channel(coeffs: &[[f32; 64]], seconds: f64) -> usize {
    let f = &coeffs[frame(seconds)];
    (LYRIC_CHANNELS..64)
        .max_by(|&x, &y| f[x].abs().total_cmp(&f[y].abs()))
        .unwrap()
}

struct Client {
    http: reqwest::blocking::Client,
    base: String,
    key: String,
}

impl Client {
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }

    fn generate(&self, body: &Value) -> Vec<String> {
        let (status, created) = self.post("/riffusion/generate", body);
        assert_eq!(status, 200, "{created}");
        created["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Polls the feed (with back-off) until every take succeeded; returns the feed.
    fn wait(&self, ids: &[String]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut pause = Duration::from_millis(100);
        let mut last = Vec::new();
        loop {
            let feed: Value = self
                .http
                .get(format!("{}/riffusion/feed/{}", self.base, ids.join(",")))
                .bearer_auth(&self.key)
                .send()
                .unwrap()
                .json()
                .unwrap();
            let riffs = feed.as_array().unwrap();
            for (i, r) in riffs.iter().enumerate() {
                assert_ne!(r["status"], "failure", "{feed}");
                let process = r["process"].as_u64().unwrap();
                assert!(process <= 100);
                if let Some(&before) = last.get(i) {
                    assert!(process >= before, "progress went back: {feed}");
                }
            }
            last = riffs
                .iter()
                .map(|r| r["process"].as_u64().unwrap())
                .collect();
            if riffs.iter().all(|r| r["status"] == "success") {
                return feed;
            }
            assert!(Instant::now() < deadline, "not done: {feed}");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// A client of `app` with a new API key.
    fn of(app: &TestApp) -> Client {
        let key = refrain_orchestrator::api::v1::auth::add_key(
            &app.data_dir().join("api-keys.json"),
            "riffusion-client",
        )
        .expect("an API key");
        Client {
            http: local_client(),
            base: app.base().to_string(),
            key,
        }
    }

    /// Every event of a job that ended, through Refrain's event stream.
    fn events(&self, id: &str) -> Vec<support::events::JobEvent> {
        EventStream::open_keyed(&self.base, id, None, Some(&self.key)).read_all()
    }

    fn wav(&self, id: &str) -> Vec<u8> {
        let r = self
            .http
            .get(format!("{}/output/{id}.wav", self.base))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().unwrap().to_vec()
    }
}

#[test]
fn generate_feed_upload_inpaint_and_extend_on_the_real_binary() {
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let c = Client::of(&app);

    // Professional mode: two takes, timed by the section rule (intro 9.5 s, 25.65 s a line).
    let lyrics = "[Verse]\nCity lights are passing by\nEvery window tells a lie\n\n\
                  [Chorus]\nWe drive into the night\n";
    let takes = c.generate(&json!({"title": "Night Drive", "lyrics": lyrics, "tags": ["jazz"]}));
    assert_eq!(takes.len(), 2);
    let feed = c.wait(&takes);
    for riff in feed.as_array().unwrap() {
        assert_eq!(riff["process"], 100);
        let url = riff["audio_url"].as_str().unwrap();
        assert!(url.starts_with(&c.base) && url.ends_with(".mp3"), "{url}");
        let mp3 = c.http.get(url).send().unwrap();
        assert_eq!(mp3.headers()["content-type"], "audio/mpeg");
    }
    let source = c.wav(&takes[0]);
    let a = project(&source);
    assert_eq!(a.len(), 2048);
    let sung = pitches(&a);
    assert_eq!(
        sung[frame(9.5)],
        first_channel("City lights are passing by")
    );
    assert_eq!(
        sung[frame(35.15)],
        first_channel("Every window tells a lie")
    );
    assert_eq!(sung[frame(9.0)], None, "the intro is instrumental");

    // Upload the take (multipart) and inpaint [30, 45) of the upload with two new lines (the
    // base model drops a song's last line, as the reference does): the first at 30.75 s.
    let form = Form::new().part("file", Part::bytes(source.clone()).file_name("take.wav"));
    let up: Value = c
        .http
        .post(format!("{}/riffusion/upload", c.base))
        .bearer_auth(&c.key)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let upload_id = up["id"].as_str().expect("an upload id");
    assert!(
        (up["duration_seconds"].as_f64().unwrap() - 95.1).abs() < 0.1,
        "{up}"
    );
    let new = "[Bridge]\nbrand new words go right here\nand one more\n";
    let inpainted = c.generate(&json!({"lyrics": new, "morph": {"transform": "inpaint",
        "audio_upload_id": upload_id, "replace_start_at": 30, "replace_end_at": 45}}));
    c.wait(&inpainted);
    let b = project(&c.wav(&inpainted[0]));
    assert_eq!(b.len(), a.len());
    let kept = (0..a.len()).filter(|&f| !(frame(30.0)..frame(45.0)).contains(&f));
    assert_kept(&a, &b, kept.collect::<Vec<_>>().into_iter());
    let p = pitches(&b);
    assert_eq!(
        p[frame(30.75)],
        first_channel("brand new words go right here")
    );
    assert_ne!(p[frame(30.75)], sung[frame(30.75)]);

    // Extend the take itself: keep 60 s, sing three new lines up to 120 s (61 s, 80.33 s and
    // 99.66 s, past the source's end), with less lyric guidance.
    let more = "[Chorus]\nfar from home\nstill we go on\nfar past the old end\n";
    let extended = c.generate(&json!({"lyrics": more, "morph": {"transform": "extend",
        "riff_id": takes[0], "crop_end_at": 60, "normalized_lyrics_strength": 0.25}}));
    let feed = c.wait(&extended);
    assert!((feed[0]["generations"][0]["duration"].as_f64().unwrap() - 120.0).abs() < 1.0);
    let e = project(&c.wav(&extended[0]));
    assert_eq!(e.len(), frame(120.0));
    assert_kept(&a, &e, 0..frame(60.0));
    let p = pitches(&e);
    assert_eq!(p[frame(61.0)], first_channel("far from home"));
    assert_eq!(p[frame(80.33)], first_channel("still we go on"));
    assert_eq!(p[frame(99.66)], first_channel("far past the old end"));
    // normalized_lyrics_strength 0.25 is CFG strength 2: a new phoneme lands at 1 + 2 = 3,
    // where the inpainted song's (CFG 4) is at 5. Both songs keep the same source frames, which
    // scale each song's level (peak normalisation) alike: measure the new lines against them.
    let style = (48..64)
        .max_by(|&x, &y| a[frame(5.0)][x].abs().total_cmp(&a[frame(5.0)][y].abs()))
        .unwrap();
    let level = |song: &[[f32; 64]], line: f64| {
        let f = frame(line);
        let c = pitches(song)[f].unwrap();
        song[f][c].abs() / song[frame(5.0)][style].abs()
    };
    let ratio = level(&e, 61.0) / level(&b, 30.75);
    assert!(
        (ratio - 0.6).abs() < 0.01,
        "CFG 2 / CFG 4 lyric level {ratio}"
    );

    // What the bundle cannot do is refused with the reason.
    let (status, e) = c.post(
        "/riffusion/generate",
        &json!({"lyrics": lyrics,
        "morph": {"transform": "swap_vocals", "riff_id": takes[0]}}),
    );
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "unsupported");
}

/// Sampler time-grid points of the swap_sound runs (`inference.steps`, server and nodes).
const SWAP_GRID: u32 = 16;

/// swap_sound through the Riffusion API on a running system with `inference.steps =
/// SWAP_GRID`: from a take of one style to the other style at strength 0.5.
fn swap_sound_end_to_end(app: &TestApp) {
    let c = Client::of(app);
    let lyrics = "[Verse]\nCity lights are passing by\nEvery window tells a lie\n\n\
                  [Chorus]\nWe drive into the night\n";
    let source = c.generate(&json!({"lyrics": lyrics, "tags": ["bright pop"]}));
    c.wait(&source);
    // One request at a time: on NATS a job's `started` is applied after the node events before
    // it (a finished take's result is fetched and encoded first), and progress of a job the
    // orchestrator does not know to be running yet is not recorded.
    let swapped = c.generate(&json!({"tags": ["dark jazz"], "morph": {
        "transform": "swap_sound", "riff_id": source[0],
        "normalized_variation_strength": 0.5}}));
    let feed = c.wait(&swapped);
    let fresh = c.generate(&json!({"lyrics": lyrics, "tags": ["dark jazz"]}));
    c.wait(&fresh);

    // t0 = 1 - 0.5; the grid is i/15 and the first point at or after 0.5 is 8/15, so 7 of
    // the 15 steps run — where a new song runs all 15.
    let start = (0..SWAP_GRID)
        .find(|&i| f64::from(i) / f64::from(SWAP_GRID - 1) >= 0.5)
        .unwrap();
    let expected = u64::from(SWAP_GRID - 1 - start);
    assert_eq!(expected, 7);
    let sampler = |id: &str| {
        let events = c.events(id);
        assert_eq!(events.last().unwrap().kind, "succeeded", "{events:?}");
        let sampling: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "progress" && e.stage() == Some("sampling"))
            .collect();
        assert!(!sampling.is_empty(), "{events:?}");
        let total = sampling[0].data["total"].as_u64().unwrap();
        assert!(sampling.iter().all(|e| e.data["total"] == total));
        assert_eq!(sampling.last().unwrap().step(), Some(total));
        total
    };
    for id in &swapped {
        assert_eq!(sampler(id), expected, "swap_sound take {id}");
    }
    assert_eq!(sampler(&fresh[0]), u64::from(SWAP_GRID - 1));

    // The source's length (95 s: 2048 frames) and its lyrics as sung, the new style: the
    // analytic DiT's last step lands on its target from any start, so the swapped take is
    // the new style's song (up to the sampler noise).
    let a = project(&c.wav(&source[0]));
    let n = project(&c.wav(&fresh[0]));
    for (riff, id) in feed.as_array().unwrap().iter().zip(&swapped) {
        let duration = riff["generations"][0]["duration"].as_f64().unwrap();
        assert!((duration - 95.1).abs() < 0.1, "{riff}");
        let wav = c.wav(id);
        let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
        assert_eq!(reader.duration() as usize, 2048 * HOP);
        let s = project(&wav);
        assert_eq!(s.len(), 2048);
        assert_eq!(pitches(&s)[frame(9.5)], pitches(&a)[frame(9.5)]);
        assert_eq!(
            pitches(&s)[frame(9.5)],
            first_channel("City lights are passing by")
        );
        assert_eq!(style_channel(&s, 5.0), style_channel(&n, 5.0));
    }
    assert_ne!(style_channel(&a, 5.0), style_channel(&n, 5.0));
}

#[test]
fn swap_sound_on_the_real_binary() {
    let Some(app) = TestApp::embedded().steps(SWAP_GRID).start() else {
        return;
    };
    swap_sound_end_to_end(&app);
}

#[test]
fn swap_sound_on_the_nats_deployment() {
    // Two nodes: the two takes of a request run at once, each `started` applied at once.
    let Some(app) = TestApp::nats().steps(SWAP_GRID).nodes(&["a", "b"]).start() else {
        return;
    };
    swap_sound_end_to_end(&app);
}
