//! `refrain bots` end to end on Discord: the real binary's Discord bot against a fake Discord
//! (REST and gateway) on loopback and a real `refrain serve` on the test bundle. `/song` is
//! deferred at once and becomes a job owned by the Discord user; the answer is edited with
//! progress (monotonic, paced, Discord's 429 `retry_after` waited out) and then carries the MP3,
//! which decodes to a song of the requested length, with an "Another take" button; a song too
//! large for the interaction's upload limit comes as Ogg/Opus or as a signed link that
//! downloads it; after the token's lifetime the song is posted in the channel mentioning the
//! requester; the Cancel button works only for the requester; mistakes are ephemeral.

mod support;

#[path = "bots/fake_discord.rs"]
mod fake_discord;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_discord::{Call, FakeDiscord, CHANNEL};
use serde_json::{json, Value};
use support::process::{log_file, refrain_command, Proc};
use support::TestApp;

/// Against hangs only.
const SONG_TIMEOUT: Duration = Duration::from_secs(300);
const USER: u64 = 800_000_000_000_000_007;
const EDIT_INTERVAL_MS: u64 = 500;
const TEN_MIB: u64 = 10 * 1024 * 1024;

struct Setup {
    app: TestApp,
    discord: FakeDiscord,
    key: String,
    _bots: Proc,
    log: PathBuf,
}

impl Setup {
    /// The server (every job with `steps` sampler steps), an API key trusted for Discord
    /// users, the fake Discord and `refrain bots` with `extra` `[bots.discord]` settings.
    fn start(steps: u32, extra: &str) -> Option<Setup> {
        let app = TestApp::embedded().steps(steps).start()?;
        let out = refrain_command(&[])
            .args([
                "keys",
                "add",
                "bot",
                "--on-behalf-of",
                "discord",
                "--data-dir",
            ])
            .arg(app.data_dir())
            .output()
            .expect("refrain keys runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let discord = FakeDiscord::start();
        let config = app.dir().join("bots.toml");
        std::fs::write(
            &config,
            format!(
                "[bots]\nserver = \"{}\"\napi_key = \"{key}\"\n[bots.limits]\nconcurrent = 1\n\
                 [bots.discord]\ntoken = \"MTIz.DISCORD.TOKEN\"\napi_url = \"{}\"\n\
                 application_id = {}\nedit_interval_ms = {EDIT_INTERVAL_MS}\n{extra}",
                app.base(),
                discord.url,
                fake_discord::APP_ID
            ),
        )
        .unwrap();
        let log = app.dir().join("bots.log");
        let child = refrain_command(&[])
            .arg("bots")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log_file(&log))
            .spawn()
            .expect("refrain bots starts");
        discord.wait_ready(Duration::from_secs(60));
        Some(Setup {
            app,
            discord,
            key,
            _bots: Proc::new(child, log.clone()),
            log,
        })
    }

    fn jobs(&self) -> Vec<Value> {
        let page: Value = support::local_client()
            .get(self.app.url("/api/v1/jobs"))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        page["jobs"].as_array().cloned().unwrap_or_default()
    }

    fn job_state(&self, id: &str) -> String {
        let job: Value = support::local_client()
            .get(self.app.url(&format!("/api/v1/jobs/{id}")))
            .bearer_auth(&self.key)
            .send()
            .unwrap()
            .json()
            .unwrap();
        job["state"].as_str().unwrap_or("").to_string()
    }

    fn logs(&self) -> String {
        support::process::read_log(&self.log)
    }
}

/// `/song` options: style, one-line LRC lyrics and a length.
fn options(length: u32) -> Value {
    json!([
        {"name": "style", "type": 3, "value": "warm piano ballad"},
        {"name": "lyrics", "type": 3,
            "value": "[00:10.00] hello world [00:20.00] second line"},
        {"name": "length", "type": 4, "value": length},
    ])
}

/// The interaction callbacks of `token` (their JSON bodies).
fn callbacks(calls: &[Call], token: &str) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with(&format!("/{token}/callback")))
        .map(|c| c.body.clone())
        .collect()
}

fn edits(calls: &[Call], token: &str) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| c.is_edit_of(token))
        .cloned()
        .collect()
}

fn percent(text: &str) -> Option<u32> {
    text.split_whitespace()
        .find_map(|w| w.strip_suffix('%').and_then(|n| n.parse().ok()))
}

fn delivered(calls: &[Call], token: &str) -> bool {
    edits(calls, token)
        .last()
        .is_some_and(|c| c.answered_ok && c.content().starts_with('✅'))
}

fn expected_seconds(length: u32) -> f64 {
    support::latent_frames(length) as f64 * 2048.0 / 44100.0
}

#[test]
fn discord_song_from_command_to_attachment_with_paced_progress() {
    let Some(setup) = Setup::start(1000, "") else {
        return;
    };
    let dc = &setup.discord;
    // Discord is busy at first: the first edit is answered 429 retry_after 1 s.
    dc.throttle_edits(1, 1.0);
    let token = dc.slash_song(USER, options(285), json!({}), TEN_MIB);
    dc.wait_for(SONG_TIMEOUT, "the song", |calls| delivered(calls, &token));
    let calls = dc.calls();

    // Deferred first (type 5), publicly.
    let answers = callbacks(&calls, &token);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["type"], 5, "{answers:?}");

    // The job belongs to the Discord user.
    let job = setup
        .jobs()
        .into_iter()
        .find(|j| j["owner"] == format!("discord:{USER}"))
        .expect("a job of the user");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        job["request"]["lyrics"],
        "[00:10.00] hello world\n[00:20.00] second line"
    );

    // 429: the next edit came after the 1 s Discord asked for.
    let all = edits(&calls, &token);
    let throttled = all.iter().position(|c| !c.answered_ok).expect("a 429");
    let gap = all[throttled + 1].at.duration_since(all[throttled].at);
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");

    // Progress edits: paced, monotonic, with a Cancel button for the job.
    let answered: Vec<&Call> = all.iter().filter(|c| c.answered_ok).collect();
    let progress: Vec<&Call> = answered
        .iter()
        .copied()
        .filter(|c| !c.content().starts_with('✅'))
        .collect();
    let timeline: Vec<(u128, String)> = all
        .iter()
        .map(|c| {
            (
                c.at.duration_since(all[0].at).as_millis(),
                c.content().to_string(),
            )
        })
        .collect();
    assert!(progress.len() >= 2, "{timeline:?}");
    for pair in progress.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(EDIT_INTERVAL_MS - 50),
            "edits {gap:?} apart: {timeline:?}"
        );
    }
    let shares: Vec<u32> = progress
        .iter()
        .filter_map(|c| percent(c.content()))
        .collect();
    assert!(
        !shares.is_empty() && shares.windows(2).all(|w| w[0] <= w[1]),
        "{timeline:?}"
    );
    let id = job["id"].as_str().unwrap();
    assert_eq!(
        progress[0].body["components"][0]["components"][0]["custom_id"],
        format!("cancel:{id}")
    );

    // The final edit: the MP3 of the requested length and an "Another take" button.
    let last = answered.last().unwrap();
    assert!(last.content().contains("hello world"), "{}", last.content());
    assert_eq!(
        last.body["components"][0]["components"][0]["custom_id"],
        format!("again:{id}")
    );
    assert_eq!(last.files.len(), 1, "one attachment");
    let (name, bytes) = &last.files[0];
    assert_eq!(name, "hello-world.mp3");
    let decoded = refrain_model::audio::decode(bytes, Some("mp3"), 600.0).expect("an MP3");
    assert!((decoded.duration_seconds() - expected_seconds(285)).abs() < 0.1);
    assert!(
        !setup.logs().contains("MTIz.DISCORD"),
        "the token is never logged"
    );

    // "Another take": a new job with the same lyrics and style and another seed.
    let again = dc.press(USER, &format!("again:{id}"));
    dc.wait_for(SONG_TIMEOUT, "the other take", |calls| {
        delivered(calls, &again)
    });
    let jobs = setup.jobs();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["request"]["lyrics"], jobs[1]["request"]["lyrics"]);
    assert_eq!(jobs[0]["request"]["style"], jobs[1]["request"]["style"]);
    assert_ne!(jobs[0]["request"]["seed"], jobs[1]["request"]["seed"]);
}

#[test]
fn discord_songs_fit_the_upload_limit_or_come_as_a_link() {
    let Some(setup) = Setup::start(8, "") else {
        return;
    };
    let dc = &setup.discord;
    // 1 MiB: a 95 s MP3 does not fit, Ogg/Opus at 64 kbps does.
    let token = dc.slash_song(USER, options(95), json!({}), 1024 * 1024);
    dc.wait_for(SONG_TIMEOUT, "the song", |calls| delivered(calls, &token));
    let last = edits(&dc.calls(), &token).pop().unwrap();
    let (name, bytes) = &last.files[0];
    assert!(name.ends_with(".ogg"), "{name}");
    assert!(bytes.len() <= 1024 * 1024 && &bytes[..4] == b"OggS");

    // 200 KiB: nothing fits; a signed link that downloads the song without a key.
    let token = dc.slash_song(USER, options(95), json!({}), 200 * 1024);
    dc.wait_for(SONG_TIMEOUT, "the link", |calls| delivered(calls, &token));
    let last = edits(&dc.calls(), &token).pop().unwrap();
    assert!(last.files.is_empty());
    let text = last.content();
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/dl/"))
        .unwrap_or_else(|| panic!("no link in {text:?}"));
    let r = support::local_client().get(url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    let decoded = refrain_model::audio::decode(&r.bytes().unwrap(), Some("mp3"), 600.0).unwrap();
    assert!((decoded.duration_seconds() - expected_seconds(95)).abs() < 0.1);
}

#[test]
fn discord_song_after_the_token_expired_is_posted_in_the_channel() {
    // A 1 s token lifetime stands for Discord's 15 minutes.
    let Some(setup) = Setup::start(600, "interaction_token_seconds = 1") else {
        return;
    };
    let dc = &setup.discord;
    // The lyrics as an .lrc attachment this time.
    let lrc = dc.attachment(
        "song.lrc",
        b"[00:10.00] from a file\n[00:20.00] second line\n".to_vec(),
        "text/plain",
    );
    let lrc_id = lrc["id"].as_str().unwrap().to_string();
    let options = json!([
        {"name": "style", "type": 3, "value": "warm piano ballad"},
        {"name": "lrc", "type": 11, "value": lrc_id},
        {"name": "length", "type": 4, "value": 95},
    ]);
    let token = dc.slash_song(USER, options, json!({ lrc_id: lrc }), TEN_MIB);
    let channel = format!("/channels/{CHANNEL}/messages");
    dc.wait_for(SONG_TIMEOUT, "the channel message", |calls| {
        calls
            .iter()
            .any(|c| c.method == "POST" && c.path == channel)
    });
    let calls = dc.calls();
    let posted = calls.iter().find(|c| c.path == channel).unwrap();
    assert!(
        posted.content().starts_with(&format!("<@{USER}> ✅")),
        "{}",
        posted.content()
    );
    assert_eq!(posted.files.len(), 1);
    assert_eq!(posted.files[0].0, "from-a-file.mp3");
    // No edit of the answer after the token expired.
    let late = edits(&calls, &token)
        .iter()
        .filter(|c| c.at > posted.at)
        .count();
    assert_eq!(late, 0);
}

#[test]
fn discord_cancel_button_mistakes_and_quotas() {
    let Some(setup) = Setup::start(1000, "") else {
        return;
    };
    let dc = &setup.discord;
    // A length out of range: ephemeral (flags 64), no job.
    let bad = dc.slash_song(USER, options(90), json!({}), TEN_MIB);
    dc.wait_for(Duration::from_secs(30), "the refusal", |calls| {
        !callbacks(calls, &bad).is_empty()
    });
    let answer = &callbacks(&dc.calls(), &bad)[0];
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64);
    assert!(answer["data"]["content"].as_str().unwrap().contains("95"));
    assert!(setup.jobs().is_empty());

    // A long song, then a second while it runs: over the one-at-a-time limit, refused
    // ephemerally with the API's message.
    let token = dc.slash_song(USER, options(285), json!({}), TEN_MIB);
    dc.wait_for(SONG_TIMEOUT, "progress", |calls| {
        edits(calls, &token)
            .iter()
            .any(|c| percent(c.content()).is_some())
    });
    let second = dc.slash_song(USER, options(95), json!({}), TEN_MIB);
    let followup = format!("/webhooks/{}/{second}", fake_discord::APP_ID);
    dc.wait_for(Duration::from_secs(60), "the quota refusal", |calls| {
        calls
            .iter()
            .any(|c| c.method == "POST" && c.path == followup)
    });
    let calls = dc.calls();
    let refusal = calls.iter().find(|c| c.path == followup).unwrap();
    assert_eq!(refusal.body["flags"], 64, "{:?}", refusal.body);
    assert!(refusal.content().starts_with('❌'), "{}", refusal.content());
    assert!(calls
        .iter()
        .any(|c| c.method == "DELETE" && c.path.contains(&second)));
    assert_eq!(setup.jobs().len(), 1);

    // Cancel: not for someone else; then for the requester.
    let id = setup.jobs()[0]["id"].as_str().unwrap().to_string();
    let other = dc.press(USER + 1, &format!("cancel:{id}"));
    dc.wait_for(Duration::from_secs(30), "the refusal", |calls| {
        !callbacks(calls, &other).is_empty()
    });
    let answer = &callbacks(&dc.calls(), &other)[0];
    assert!(answer["data"]["content"]
        .as_str()
        .unwrap()
        .contains("Only who asked"));
    assert_eq!(setup.job_state(&id), "running");
    dc.press(USER, &format!("cancel:{id}"));
    dc.wait_for(SONG_TIMEOUT, "the cancelled answer", |calls| {
        edits(calls, &token)
            .last()
            .is_some_and(|c| c.content().contains("Cancelled"))
    });
    assert_eq!(setup.job_state(&id), "cancelled");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(edits(&dc.calls(), &token)
        .iter()
        .all(|c| c.files.is_empty()));
}
