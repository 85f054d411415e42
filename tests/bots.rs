//! `refrain bots` end to end: the real binary's Telegram bot against a fake Bot API on loopback
//! and a real `refrain serve` on the test bundle (behind a loopback forwarder, so that the
//! server can restart on a new port while the bot keeps one URL). A `/song` command becomes a
//! job owned by the chat user, its progress message is edited in place (monotonic, paced,
//! 429 `retry_after` honoured) and the MP3 sent with `sendAudio` decodes to a song of the
//! requested length; the Cancel button cancels only for its requester. Restarts are in
//! tests/bots_restart.rs, the shared set-up in tests/bots/telegram.rs.

mod support;

// Each test file uses part of the shared fakes.
#[allow(dead_code)]
#[path = "bots/fake_telegram.rs"]
mod fake_telegram;
#[allow(dead_code)]
#[path = "bots/proxy.rs"]
mod proxy;

#[path = "bots/telegram.rs"]
mod telegram;

use std::time::Duration;

use fake_telegram::{Call, FakeTelegram};
use serde_json::Value;
use support::process::refrain_command;
use support::TestApp;
use telegram::*;

#[test]
fn telegram_song_from_command_to_audio_with_paced_progress() {
    let Some(setup) = Setup::start(1000) else {
        return;
    };
    let tg = &setup.telegram;
    // Telegram is busy at first: the first progress edit is answered 429 retry_after 2.
    tg.throttle("editMessageText", 1, 2);
    let request = tg.send_text(USER, &song_command());
    let progress = progress_message(tg);
    tg.wait_for(SONG_TIMEOUT, "the song", |calls| {
        calls.iter().any(|c| c.method == "sendaudio")
    });
    // The final edit follows the audio.
    tg.wait_for(Duration::from_secs(30), "the final edit", |calls| {
        edits_of(calls, progress)
            .last()
            .is_some_and(|c| c.body["text"].as_str().unwrap_or("").starts_with('✅'))
    });
    let calls = tg.calls();

    // The job belongs to the chat user and names the chat and message.
    let job = setup.wait_job("of the user", |j| j["owner"] == format!("telegram:{USER}"));
    let job = setup.job(job["id"].as_str().unwrap());
    assert_eq!(job["state"], "succeeded", "{job}");
    let data = job["client_data"].as_str().unwrap();
    assert!(
        data.contains(&format!("chat={USER}")) && data.contains(&format!("msg={progress}")),
        "{data}"
    );

    // 429: the bot waited the 2 s Telegram asked for before editing again.
    let edits = edits_of(&calls, progress);
    let throttled = edits.iter().position(|c| !c.answered_ok).expect("a 429");
    let next = &edits[throttled + 1];
    assert!(
        next.at.duration_since(edits[throttled].at) >= Duration::from_millis(1950),
        "retried after {:?}",
        next.at.duration_since(edits[throttled].at)
    );
    // Edits are paced (one per interval per chat) and progress never goes backwards.
    let answered: Vec<&Call> = edits.iter().filter(|c| c.answered_ok).collect();
    let timeline: Vec<(u128, bool, String)> = edits
        .iter()
        .map(|c| {
            let ms = c.at.duration_since(edits[0].at).as_millis();
            (
                ms,
                c.answered_ok,
                c.body["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(answered.len() >= 3, "{timeline:?}");
    for pair in answered.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        let least = Duration::from_millis(EDIT_INTERVAL_MS - 50);
        assert!(gap >= least, "edits {gap:?} apart: {timeline:?}");
    }
    let shares: Vec<u32> = answered
        .iter()
        .filter_map(|c| percent(c.body["text"].as_str().unwrap_or("")))
        .collect();
    assert!(shares.windows(2).all(|w| w[0] <= w[1]), "{shares:?}");
    assert!(!shares.is_empty(), "{answered:?}");

    // One song, as MP3 with title and performer, answering the request, of the asked length.
    let audio = tg.audio();
    assert_eq!(audio.len(), 1, "one song");
    let song = &audio[0];
    assert_eq!(song.fields["title"], "hello world");
    assert!(
        song.fields["performer"]
            .as_str()
            .unwrap()
            .contains("warm piano ballad"),
        "{:?}",
        song.fields
    );
    assert_eq!(song.file_name.as_deref(), Some("hello world.mp3"));
    let reply = song.fields["reply_parameters"]["message_id"].as_i64();
    assert_eq!(reply, Some(request), "{:?}", song.fields);
    let decoded =
        refrain_model::audio::decode(&song.bytes, Some("mp3"), 600.0).expect("the audio is an MP3");
    let expected = support::latent_frames(LENGTH) as f64 * 2048.0 / 44100.0;
    assert!(
        (decoded.duration_seconds() - expected).abs() < 0.1,
        "{} s, expected {expected} s",
        decoded.duration_seconds()
    );
    assert!(
        !setup.logs().contains("123:TEST"),
        "the token is never logged"
    );
}

#[test]
fn telegram_cancel_button_cancels_only_for_the_requester() {
    let Some(setup) = Setup::start(1000) else {
        return;
    };
    let tg = &setup.telegram;
    tg.send_text(USER, &song_command());
    let progress = progress_message(tg);
    let job = setup.wait_job("of the user", |j| j["owner"] == format!("telegram:{USER}"));
    let id = job["id"].as_str().unwrap().to_string();
    let button = edits_of(&tg.calls(), progress)[0].body["reply_markup"]["inline_keyboard"][0][0]
        ["callback_data"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(button, format!("cancel:{id}"));

    // Someone else in the chat cannot cancel it.
    tg.press(USER + 1, &button);
    tg.wait_for(Duration::from_secs(30), "the refusal", |calls| {
        calls.iter().any(|c| c.method == "answercallbackquery")
    });
    assert!(!setup.job(&id)["state"].as_str().unwrap().contains("cancel"));

    tg.press(USER, &button);
    tg.wait_for(SONG_TIMEOUT, "the cancelled message", |calls| {
        edits_of(calls, progress)
            .last()
            .is_some_and(|c| c.body["text"].as_str().unwrap_or("").contains("Cancelled"))
    });
    assert_eq!(setup.job(&id)["state"], "cancelled");
    let answers: Vec<String> = tg
        .calls()
        .iter()
        .filter(|c| c.method == "answercallbackquery")
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(answers[0].contains("Only who asked"), "{answers:?}");
    assert!(tg.audio().is_empty());
    // The last edit has no Cancel button left.
    let last = edits_of(&tg.calls(), progress).pop().unwrap();
    assert!(last.body.get("reply_markup").is_none(), "{:?}", last.body);
}

#[test]
fn telegram_oversized_song_is_a_link_and_the_core_holds_each_user_to_one_song() {
    // Nothing fits: the song comes as a link to its public URL.
    let Some(setup) = Setup::start_with(1000, "max_upload_bytes = 1000\n") else {
        return;
    };
    let tg = &setup.telegram;
    tg.send_text(USER, &song_command());
    let progress = progress_message(tg);
    // A second song while the first is being made: the server refuses it for this user
    // (`[bots.limits] concurrent = 1`, enforced by the core for telegram:<user>).
    tg.send_text(USER, &song_command());
    tg.wait_for(SONG_TIMEOUT, "the refusal", |calls| {
        calls.iter().any(|c| {
            c.method == "editmessagetext"
                && c.body["message_id"].as_i64() != Some(progress)
                && c.body["text"].as_str().unwrap_or("").contains("telegram:7")
        })
    });
    tg.wait_for(SONG_TIMEOUT, "the link", |calls| {
        calls.iter().any(|c| {
            c.method == "sendmessage" && c.body["text"].as_str().unwrap_or("").contains("/output/")
        })
    });
    assert!(tg.audio().is_empty(), "no upload over the limit");
    let calls = tg.calls();
    let text = calls
        .iter()
        .rev()
        .find(|c| c.method == "sendmessage")
        .and_then(|c| c.body["text"].as_str())
        .unwrap()
        .to_string();
    let url = text[text.find("http").unwrap()..].trim().to_string();
    // The link goes through the bot's server URL (the forwarder) and needs no key.
    assert!(url.starts_with(&setup.proxy.url), "{url}");
    let bytes = support::local_client()
        .get(&url)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let decoded = refrain_model::audio::decode(&bytes, Some("mp3"), 600.0).expect("an MP3");
    let expected = support::latent_frames(LENGTH) as f64 * 2048.0 / 44100.0;
    assert!((decoded.duration_seconds() - expected).abs() < 0.1);
    let owned = setup
        .jobs()
        .into_iter()
        .filter(|j| j["owner"] == format!("telegram:{USER}"))
        .count();
    assert_eq!(owned, 1, "the refused song made no job");
}

#[test]
fn the_example_configuration_loads_and_a_missing_token_is_named() {
    let out = refrain_command(&[])
        .args(["bots", "--config", "config/bots.example.toml"])
        .output()
        .expect("refrain bots runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("REFRAIN_BOTS__TELEGRAM__TOKEN"), "{stderr}");
    let out = refrain_command(&[("REFRAIN_BOTS__DEFAULT_LENGTH_SECONDS".into(), "90".into())])
        .args(["bots", "--config", "config/bots.example.toml"])
        .output()
        .expect("refrain bots runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bots.default_length_seconds"), "{stderr}");
}

#[test]
fn telegram_bot_inside_refrain_serve_makes_songs_too() {
    // No `refrain bots` process: the token in the server's own configuration starts the bot
    // inside it, talking to the server's own address (no keys: the open loopback default).
    let telegram = FakeTelegram::start();
    let Some(app) = TestApp::embedded()
        .steps(1000)
        .env("REFRAIN_BOTS__TELEGRAM__TOKEN", "123:TEST")
        .env("REFRAIN_BOTS__TELEGRAM__API_URL", &telegram.url)
        .env("REFRAIN_BOTS__TELEGRAM__EDIT_INTERVAL_MS", EDIT_INTERVAL_MS)
        .env("REFRAIN_BOTS__TELEGRAM__POLL_TIMEOUT_SECONDS", 1)
        .start()
    else {
        return;
    };
    telegram.send_text(USER, &song_command());
    telegram.wait_for(SONG_TIMEOUT, "the song", |calls| {
        calls.iter().any(|c| c.method == "sendaudio")
    });
    let audio = telegram.audio();
    let decoded = refrain_model::audio::decode(&audio[0].bytes, Some("mp3"), 600.0).expect("MP3");
    let expected = support::latent_frames(LENGTH) as f64 * 2048.0 / 44100.0;
    assert!((decoded.duration_seconds() - expected).abs() < 0.1);
    let jobs: Value = support::local_client()
        .get(app.url("/api/v1/jobs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(jobs["jobs"][0]["owner"], format!("telegram:{USER}"));
    assert!(
        !app.server.all_logs().contains("123:TEST"),
        "the token is never logged"
    );
}

#[test]
fn telegram_reply_to_an_audio_message_uses_it_as_the_style() {
    let Some(setup) = Setup::start(2) else {
        return;
    };
    let tg = &setup.telegram;
    let recording = tg.send_audio(USER, support::sine_wav(12.0), "audio/wav");
    tg.reply_text(USER, "/song 95\n[00:10.00] hello world", recording);
    tg.wait_for(SONG_TIMEOUT, "the song", |calls| {
        calls.iter().any(|c| c.method == "sendaudio")
    });
    assert!(
        tg.calls().iter().any(|c| c.method == "getfile"),
        "the recording was fetched"
    );
    let job = setup.wait_job("of the user", |j| j["owner"] == format!("telegram:{USER}"));
    assert_eq!(
        job["request"]["style"],
        serde_json::json!({"audio": "uploaded"})
    );
    let audio = tg.audio();
    assert_eq!(audio.len(), 1);
    assert_eq!(audio[0].fields["title"], "hello world");
    let decoded = refrain_model::audio::decode(&audio[0].bytes, Some("mp3"), 600.0).expect("MP3");
    let expected = support::latent_frames(95) as f64 * 2048.0 / 44100.0;
    assert!((decoded.duration_seconds() - expected).abs() < 0.1);
}

#[test]
fn telegram_queue_and_cancel_commands_act_on_the_users_own_song() {
    let Some(setup) = Setup::start(1000) else {
        return;
    };
    let tg = &setup.telegram;
    tg.send_text(USER, &song_command());
    let progress = progress_message(tg);
    let job = setup.wait_job("of the user", |j| j["owner"] == format!("telegram:{USER}"));
    let id = job["id"].as_str().unwrap().to_string();
    let replies = |needle: &'static str| {
        move |calls: &[Call]| {
            calls.iter().any(|c| {
                c.method == "sendmessage" && c.body["text"].as_str().unwrap_or("").contains(needle)
            })
        }
    };
    tg.send_text(USER, "/queue");
    tg.wait_for(Duration::from_secs(60), "the queue", replies("Yours"));
    // Another user has nothing to cancel; the requester's /cancel cancels the song.
    tg.send_text(USER + 1, "/cancel");
    tg.wait_for(
        Duration::from_secs(60),
        "nothing to cancel",
        replies("no song"),
    );
    assert_ne!(setup.job(&id)["state"], "cancelled");
    tg.send_text(USER, "/cancel");
    tg.wait_for(SONG_TIMEOUT, "the cancelled message", |calls| {
        edits_of(calls, progress)
            .last()
            .is_some_and(|c| c.body["text"].as_str().unwrap_or("").contains("Cancelled"))
    });
    assert_eq!(setup.job(&id)["state"], "cancelled");
    tg.send_text(USER, "/help");
    tg.wait_for(
        Duration::from_secs(60),
        "the help",
        replies("/song [length] <style>"),
    );
}
