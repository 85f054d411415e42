//! The web page at `/` end to end, in headless Chromium driven through the Chrome DevTools
//! Protocol: the page is filled in and submitted like a person would (mouse clicks at the
//! elements' positions, Enter on a focused button), its song plays in an `<audio>` player with
//! download links per format, a queued and a running job are cancelled from the page, the
//! running one shown with its progress, the list of recent jobs survives a reload, and the
//! layout is one column on a phone. Screenshots go to `target/test-artifacts/`: `web.png`,
//! `web-progress.png` and `web-phone.png`.
//!
//! Chromium is talked to over `--remote-debugging-pipe` (NUL-terminated JSON messages on file
//! descriptors 3 and 4), so no WebSocket client and no port are needed. It comes from
//! `CHROMIUM`, else `chromium`, `chromium-browser`, `google-chrome` or `google-chrome-stable` on
//! `PATH` (`apt-get install chromium`); without one the test is skipped with a message, except
//! in CI (`CI` set), where it fails.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::browser::{chromium_binary, Browser};
use support::*;

/// One in-process node, and 1000 sampler steps (the most a job may take): four variants of a
/// 285 s song keep the node sampling for many seconds, far longer than the few page actions
/// between its first sampling step and its cancel. A job submitted from the page meanwhile can
/// only wait in the queue, where it is cancelled from the page; the running job is then shown
/// with its progress and cancelled from the page too; the page's own 95 s song runs to the end.
#[test]
fn the_page_makes_a_song_and_cancels_a_queued_one() {
    let Some(chromium) = chromium_binary() else {
        return;
    };
    let Some(app) = TestApp::embedded().steps(1000).start() else {
        return;
    };
    let api = app.api();

    // The four static files, with their types, revalidated on every load.
    for (path, kind) in [
        ("/", "text/html"),
        ("/lib.js", "text/javascript"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let response = api.http.get(app.url(path)).send().expect("GET");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
    }

    let mut browser = Browser::launch(&chromium, app.dir());
    let page = app.url("/");
    browser.open(&page);

    // Every control has a label.
    let unlabelled = browser.eval(
        "[...document.querySelectorAll('input, select, textarea')]\
         .filter((e) => e.labels.length === 0).map((e) => e.id || e.name)",
    );
    assert_eq!(unlabelled, json!([]), "controls without a label");

    // --- A job from the page waits behind a running one and is cancelled from the page.
    let blocker = create_job(&api, 285, 4);
    let mut blocker_events = app.events(&blocker);
    blocker_events.wait_sampling(1);

    browser.fill(
        "#lyrics",
        "[00:10.00] wait for your turn\n[00:20.00] in line",
    );
    browser.fill("#prompt", "slow piano ballad");
    browser.fill("#length", "95");
    browser.press_enter_on("#submit");
    browser.wait_for(
        "the page's job queued",
        "document.getElementById('current').dataset.state === 'queued'",
    );
    let queued = browser.eval("document.getElementById('current').dataset.job");
    let queued = queued.as_str().expect("the job id on the page").to_string();
    assert_ne!(queued, blocker);
    browser.wait_for(
        "the queue position shown",
        "document.getElementById('status-line').textContent.includes('next in line')",
    );
    browser.click("#cancel");
    browser.wait_for(
        "the page's job cancelled",
        "document.getElementById('current').dataset.state === 'cancelled' \
         && document.getElementById('status-line').textContent.includes('Cancelled')",
    );
    assert_eq!(api.job(&queued)["state"], "cancelled");
    assert_eq!(api.history_kinds(&queued), ["queued", "cancelled"]);

    // --- The running job, as a page that followed it before a reload shows it: its progress,
    // then cancelled from the page.
    browser.eval(&format!(
        "localStorage.setItem('refrain.recentJobs', JSON.stringify([{b}, {q}])); \
         localStorage.setItem('refrain.currentJob', JSON.stringify({b}))",
        b = json!(blocker),
        q = json!(queued),
    ));
    browser.open(&page);
    browser.wait_for(
        "the running job's progress",
        "document.getElementById('current').dataset.state === 'running' \
         && document.getElementById('status-line').textContent.includes('Sampling') \
         && /step \\d+ of \\d+/.test(document.getElementById('status-detail').textContent) \
         && document.getElementById('progress').value > 0",
    );
    browser.screenshot(&artifacts().join("web-progress.png"));
    browser.click("#cancel");
    browser.wait_for(
        "the running job cancelled",
        "document.getElementById('current').dataset.state === 'cancelled'",
    );
    let last = blocker_events.final_event();
    assert_eq!(
        last.kind, "cancelled",
        "the running job must not finish first"
    );
    assert_eq!(last.attempt(), 1);
    assert_eq!(api.cancel(&blocker).0, 409, "cancelled once");

    // --- The API's refusal is shown next to the field it names.
    browser.fill("#lyrics", "[00:75.00] no such second");
    browser.fill("#prompt", "bright acoustic pop with piano");
    browser.click("#submit");
    let error = browser.wait_for(
        "the lyrics error",
        "!document.getElementById('lyrics-error').hidden \
         && document.getElementById('lyrics').getAttribute('aria-invalid') === 'true' \
         && document.getElementById('lyrics-error').textContent",
    );
    assert!(error.as_str().unwrap_or_default().contains("75"), "{error}");
    assert_eq!(
        browser.eval("document.activeElement.id"),
        "lyrics",
        "the field in error takes the focus"
    );

    // --- A song from plain lines, spread over 95 s by the page.
    browser.fill(
        "#lyrics",
        "hello from the web page\nsinging on the loopback\nla la la",
    );
    browser.fill("#length", "95");
    browser.click("#spread");
    let lyrics = browser.eval("document.getElementById('lyrics').value");
    let lyrics = lyrics.as_str().expect("lyrics").to_string();
    let lines: Vec<&str> = lyrics.lines().collect();
    assert_eq!(lines.len(), 3, "{lyrics}");
    assert!(lines[0].starts_with("[00:09.50] hello"), "{lyrics}");
    assert!(lines.iter().all(|l| l.starts_with("[0")), "{lyrics}");
    browser.fill("#seed", "7");
    browser.fill("#format", "wav");
    browser.click("#submit");
    let src = browser.wait_for(
        "the song's player",
        "document.getElementById('current').dataset.state === 'succeeded' \
         && document.querySelector('#result audio')?.src",
    );
    let src = src.as_str().expect("audio src").to_string();
    let song = browser.eval("document.getElementById('current').dataset.job");
    let song = song.as_str().expect("the job id on the page").to_string();
    assert!(src.starts_with(&app.url("/output/")), "{src}");
    assert!(src.contains(&song), "{src}");
    let audio = api.http.get(&src).send().expect("GET audio");
    assert_eq!(audio.status().as_u16(), 200, "{src}");
    let kind = audio.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(kind.starts_with("audio/wav"), "{src}: {kind}");
    assert_song_wav(&audio.bytes().expect("WAV"), latent_frames(95));
    // The player reads it.
    browser.wait_for(
        "the player's metadata",
        "(() => { const a = document.querySelector('#result audio'); \
         return a.error ? 'error ' + a.error.code : a.readyState >= 1; })()",
    );
    let duration = browser.eval("document.querySelector('#result audio').duration");
    assert!(duration.as_f64().unwrap_or(0.0) > 90.0, "{duration}");
    // A download link per format, each answering with audio of that format.
    let links =
        browser.eval("[...document.querySelectorAll('#result a.download')].map((a) => a.href)");
    let links: Vec<String> = serde_json::from_value(links).expect("links");
    assert_eq!(links.len(), 3, "{links:?}");
    for (link, format) in links.iter().zip(["wav", "mp3", "ogg"]) {
        assert!(
            link.contains("/output/") && link.ends_with(&format!(".{format}")),
            "{link}"
        );
        let response = api.http.get(link).send().expect("GET download");
        assert_eq!(response.status().as_u16(), 200, "{link}");
        let kind = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap_or_default()
            .to_string();
        let expected = match format {
            "wav" => "audio/wav",
            "mp3" => "audio/mpeg",
            _ => "audio/ogg",
        };
        assert!(kind.starts_with(expected), "{link}: {kind}");
    }

    // --- After a reload: both jobs listed with their states, the song shown again.
    browser.open(&page);
    let states = browser.wait_for(
        "the recent jobs",
        "document.querySelectorAll('#recent-list li').length === 3 \
         && [...document.querySelectorAll('#recent-list li')].map((li) => li.dataset.job + ' ' \
         + li.dataset.state)",
    );
    assert_eq!(
        states,
        json!([
            format!("{song} succeeded"),
            format!("{blocker} cancelled"),
            format!("{queued} cancelled"),
        ])
    );
    browser.wait_for(
        "the song shown again",
        "document.querySelector('#result audio')?.src",
    );
    browser.screenshot(&artifacts().join("web.png"));

    // --- A phone: one column.
    browser.phone();
    browser.open(&page);
    browser.wait_for(
        "the recent jobs on a phone",
        "document.querySelectorAll('#recent-list li').length === 3",
    );
    let columns = browser.eval(
        "getComputedStyle(document.querySelector('.layout')).gridTemplateColumns.split(' ').length",
    );
    assert_eq!(columns, 1, "one column on a phone");
    browser.screenshot(&artifacts().join("web-phone.png"));

    let errors = browser.page_errors();
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
}

/// With API keys configured, the page sends the key typed in as `Authorization: Bearer` on every
/// call — the job, its events (read with fetch, not EventSource) — and never in a URL; the
/// player streams the file's `public_url` (`/output/…`, no key); without the key, the API's 401
/// is shown at the key field.
#[test]
fn the_page_sends_the_api_key() {
    let Some(chromium) = chromium_binary() else {
        return;
    };
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    // What `refrain keys add web-test` does; the server re-reads the file.
    let key = refrain_orchestrator::api::v1::auth::add_key(
        &app.data_dir().join("api-keys.json"),
        "web-test",
    )
    .expect("an API key");
    assert!(!key.is_empty());

    let mut browser = Browser::launch(&chromium, app.dir());
    let page = app.url("/");
    browser.open(&page);
    browser.fill("#lyrics", "[00:10.00] let me in\n[00:20.00] with my key");
    browser.fill("#prompt", "bright acoustic pop with piano");
    browser.click("#submit");
    browser.wait_for(
        "the key refused",
        "!document.getElementById('api-key-error').hidden \
         && document.getElementById('key-box').open",
    );

    browser.fill("#api-key", &key);
    browser.click("#submit");
    let src = browser.wait_for(
        "the song's player",
        "document.getElementById('current').dataset.state === 'succeeded' \
         && document.querySelector('#result audio')?.src",
    );
    let src = src.as_str().expect("audio src").to_string();
    assert!(
        src.starts_with(&app.url("/output/")) && !src.contains(&key),
        "{src}"
    );
    browser.wait_for(
        "the player's metadata",
        "(() => { const a = document.querySelector('#result audio'); \
         return a.error ? 'error ' + a.error.code : a.readyState >= 1; })()",
    );
    let duration = browser.eval("document.querySelector('#result audio').duration");
    assert!(duration.as_f64().unwrap_or(0.0) > 90.0, "{duration}");
    let song = browser.eval("document.getElementById('current').dataset.job");
    let song = song.as_str().expect("the job id on the page").to_string();
    // The player's link needs no key (the job id in it is the secret); the API's does.
    let no_key = reqwest::blocking::Client::new();
    let public = no_key.get(&src).send().expect("GET the public link");
    assert_eq!(public.status().as_u16(), 200, "{src}");
    let private = no_key
        .get(app.url(&format!("/api/v1/jobs/{song}/audio/1")))
        .send()
        .expect("GET the API's audio without a key");
    assert_eq!(private.status().as_u16(), 401);
    let job: Value = app
        .api()
        .http
        .get(app.url(&format!("/api/v1/jobs/{song}")))
        .bearer_auth(&key)
        .send()
        .and_then(|r| r.json())
        .expect("GET the job");
    assert_eq!(job["owner"], "key:web-test", "{job}");

    // The key is kept in the browser: after a reload the list still reads the job.
    browser.open(&page);
    browser.wait_for(
        "the recent job",
        &format!(
            "document.querySelector('#recent-list li[data-job={}]')?.dataset.state === 'succeeded'",
            json!(song)
        ),
    );
    let errors = browser.page_errors();
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
    // Every API call carried the key in its header, none in its URL.
    let requests = browser.requests();
    let api_calls: Vec<&(String, Value)> = requests
        .iter()
        .filter(|(url, _)| url.contains("/api/v1/"))
        .collect();
    assert!(
        api_calls.iter().all(|(url, _)| !url.contains(&key)),
        "the key must never travel in a URL: {api_calls:?}"
    );
    let bearer = format!("Bearer {key}");
    for what in ["/events", &format!("/api/v1/jobs/{song}")] {
        assert!(
            api_calls
                .iter()
                .any(|(url, headers)| url.contains(what) && headers["Authorization"] == bearer),
            "no {what} request with the key: {api_calls:?}"
        );
    }
}

#[test]
fn the_page_makes_a_song_from_a_reference_recording() {
    let Some(chromium) = chromium_binary() else {
        return;
    };
    let Some(app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let not_audio = app.dir().join("notes.wav");
    std::fs::write(&not_audio, b"these are not samples").unwrap();
    let reference = app.dir().join("reference.wav");
    std::fs::write(&reference, sine_wav(12.0)).unwrap();

    let mut browser = Browser::launch(&chromium, app.dir());
    browser.open(&app.url("/"));
    browser.fill(
        "#lyrics",
        "[00:10.00] sing it like
[00:20.00] the record",
    );
    browser.click("#style-kind-upload");
    browser.wait_for(
        "the file field",
        "!document.getElementById('upload-box').hidden",
    );
    // No file chosen: the page says so before sending anything.
    browser.click("#submit");
    browser.wait_for(
        "the missing file named",
        "!document.getElementById('reference-error').hidden",
    );
    // A file that is not audio: the server's refusal lands on the file field.
    browser.set_files("#reference", &[&not_audio]);
    browser.click("#submit");
    let refusal = browser.wait_for(
        "the upload refused",
        "(() => { const e = document.getElementById('reference-error'); \
         return !e.hidden && e.textContent.trim(); })()",
    );
    assert!(
        !refusal.as_str().unwrap_or_default().is_empty(),
        "{refusal}"
    );
    assert!(app.api().get_json("/api/v1/jobs")["jobs"]
        .as_array()
        .is_some_and(|jobs| jobs.is_empty()));

    // A real recording: uploaded, then the song is made in its style.
    browser.set_files("#reference", &[&reference]);
    browser.click("#submit");
    browser.wait_for(
        "the song's player",
        "document.getElementById('current').dataset.state === 'succeeded' \
         && document.querySelector('#result audio')?.src",
    );
    let song = browser.eval("document.getElementById('current').dataset.job");
    let song = song.as_str().expect("the job id on the page").to_string();
    let job = app.api().get_json(&format!("/api/v1/jobs/{song}"));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["request"]["style"]["audio"], "uploaded", "{job}");
    let uploads: Vec<_> = browser
        .requests()
        .into_iter()
        .filter(|(url, _)| url.ends_with("/api/v1/uploads"))
        .collect();
    assert_eq!(
        uploads.len(),
        2,
        "one refused upload, one accepted: {uploads:?}"
    );
    let errors = browser.page_errors();
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
}

/// `POST /api/v1/jobs` with a text prompt; the job's id.
fn create_job(api: &Api, seconds: u32, variants: u32) -> String {
    let response = api
        .http
        .post(format!("{}/api/v1/jobs", api.base))
        .json(&json!({
            "lyrics": "[00:05.00] the long one\n[00:15.00] keeps the node busy",
            "style": {"prompt": "slow ambient drone"},
            "length_seconds": seconds,
            "seed": 1,
            "variants": variants,
        }))
        .send()
        .expect("POST /api/v1/jobs");
    let status = response.status().as_u16();
    let body: Value = response.json().expect("JSON");
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().expect("id").to_string()
}

/// `target/test-artifacts/`, created.
fn artifacts() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("target/test-artifacts");
    dir
}
