//! `refrain bots` across restarts, end to end (set-up in tests/bots/telegram.rs): a song whose
//! orchestrator restarts, and whose bot restarts, in the middle is still delivered once; a song
//! that ends while the bot is down is delivered once the bot is back, and never again.

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

use std::time::{Duration, Instant};

use fake_telegram::Call;
use telegram::*;

#[test]
fn telegram_song_survives_orchestrator_and_bot_restarts_and_arrives_once() {
    let Some(mut setup) = Setup::start(1000) else {
        return;
    };
    setup.telegram.send_text(USER, &song_command());
    let progress = progress_message(&setup.telegram);
    let running = |calls: &[Call]| {
        edits_of(calls, progress)
            .iter()
            .any(|c| percent(c.body["text"].as_str().unwrap_or("")).is_some_and(|p| p > 0))
    };
    setup
        .telegram
        .wait_for(SONG_TIMEOUT, "the song being made", running);

    // The orchestrator dies mid-song and comes back on another port behind the same URL.
    setup.app.server.restart();
    setup.proxy.retarget(setup.app.base());
    let before = edits_of(&setup.telegram.calls(), progress).len();
    setup
        .telegram
        .wait_for(SONG_TIMEOUT, "progress after the restart", |calls| {
            edits_of(calls, progress).len() > before
        });

    // Then the bot itself restarts: it finds the job and its message again.
    setup.bots.kill();
    setup.start_bots();
    setup.telegram.wait_for(SONG_TIMEOUT, "the song", |calls| {
        calls.iter().any(|c| c.method == "sendaudio")
    });
    setup
        .telegram
        .wait_for(Duration::from_secs(30), "the final edit", |calls| {
            edits_of(calls, progress)
                .last()
                .is_some_and(|c| c.body["text"].as_str().unwrap_or("").starts_with('✅'))
        });
    // Nothing more comes: the song was delivered once, on the original message.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(setup.telegram.audio().len(), 1, "{}", setup.logs());
    let progress_messages = setup
        .telegram
        .calls()
        .iter()
        .filter(|c| c.method == "sendmessage")
        .count();
    assert_eq!(progress_messages, 1, "no second progress message");
    assert!(
        setup.logs().contains("following the job again"),
        "{}",
        setup.logs()
    );
    let decoded =
        refrain_model::audio::decode(&setup.telegram.audio()[0].bytes, Some("mp3"), 600.0)
            .expect("an MP3");
    let expected = support::latent_frames(LENGTH) as f64 * 2048.0 / 44100.0;
    assert!((decoded.duration_seconds() - expected).abs() < 0.1);
}

#[test]
fn telegram_song_that_ends_while_the_bot_is_down_is_delivered_once_it_is_back() {
    let Some(mut setup) = Setup::start(1000) else {
        return;
    };
    setup.telegram.send_text(USER, &song_command());
    let progress = progress_message(&setup.telegram);
    let job = setup.wait_job("created", |_| true);
    let id = job["id"].as_str().unwrap().to_string();
    let client_data = |setup: &Setup| {
        setup.job(&id)["client_data"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        client_data(&setup).contains(";d=0"),
        "{}",
        client_data(&setup)
    );

    // The bot goes away while the song is made, and the song ends without it.
    setup.bots.kill();
    setup.wait_job("succeeded", |j| {
        j["id"] == id.as_str() && j["state"] == "succeeded"
    });
    assert!(setup.telegram.audio().is_empty());

    // Back, it finds the song it owes and delivers it, on the original message, and notes so.
    setup.start_bots();
    setup.telegram.wait_for(SONG_TIMEOUT, "the song", |calls| {
        calls.iter().any(|c| c.method == "sendaudio")
    });
    let deadline = Instant::now() + SONG_TIMEOUT;
    while !client_data(&setup).contains(";d=1") {
        assert!(
            Instant::now() < deadline,
            "never noted: {}",
            client_data(&setup)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(edits_of(&setup.telegram.calls(), progress)
        .last()
        .is_some_and(|c| c.body["text"].as_str().unwrap_or("").starts_with('✅')));

    // Another restart delivers nothing again.
    setup.bots.kill();
    setup.start_bots();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(setup.telegram.audio().len(), 1, "{}", setup.logs());
}
