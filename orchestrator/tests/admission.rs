//! Admission end to end, in process, through `App::admit` — the call every front end makes —
//! on the real service (`service::start`) with idle nodes: idempotency keys, audio handed in as
//! base64, as a stored upload id and as a URL (served on loopback, with
//! `fetch.allow_private_addresses` on, as only a trusted deployment would), the catalogue codes
//! and neutral fields of refusals, and the clean-up of uploads stored for a refused request.

use crate::support;

use protocol::{Owner, Source, StyleSpec};
use refrain_orchestrator::admission::{AudioInput, Draft, StyleInput};
use refrain_orchestrator::error::{ErrorCode, Field, OrchestratorError};
use refrain_orchestrator::service::JobMeta;
use support::http::wav;
use support::{start, start_with, TestService};

fn draft(owner: &str, key: Option<&str>) -> Draft {
    let mut meta = JobMeta::anonymous(Source::RefrainApi);
    meta.owner = Owner::new("key", owner);
    meta.idempotency_key = key.map(str::to_owned);
    let mut d = Draft::new(meta);
    d.lyrics = "[00:01.00] hello there".into();
    d.style = Some(StyleInput::Prompt("warm piano ballad".into()));
    d.seconds = Some(95);
    d
}

fn uploads(s: &TestService) -> usize {
    std::fs::read_dir(s.app.config().blobs_dir())
        .map(|d| d.count())
        .unwrap_or(0)
}

fn code_and_field(e: &OrchestratorError) -> (ErrorCode, Option<Field>) {
    (e.code(), e.field().cloned())
}

#[tokio::test]
async fn idempotency_keys_return_the_same_job_or_a_conflict() {
    let s = start().await;
    s.app.set_ready(true);
    let first = s.app.admit(draft("alice", Some("k-1"))).await.unwrap();
    assert!(first.created);
    // The same request again (the seed is random, but not part of the request): the same job.
    let again = s.app.admit(draft("alice", Some("k-1"))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.record.id, first.record.id);
    // Another owner's key is another key.
    let other = s.app.admit(draft("bob", Some("k-1"))).await.unwrap();
    assert!(other.created);
    assert_ne!(other.record.id, first.record.id);
    // The same key with a different request: refused, naming the job.
    let mut changed = draft("alice", Some("k-1"));
    changed.seconds = Some(120);
    let e = s.app.admit(changed).await.unwrap_err();
    assert_eq!(
        code_and_field(&e),
        (ErrorCode::IdempotencyConflict, Some(Field::IdempotencyKey))
    );
    assert!(e.to_string().contains(first.record.id.as_str()), "{e}");
    // Without a key every request is a new job.
    let a = s.app.admit(draft("alice", None)).await.unwrap();
    let b = s.app.admit(draft("alice", None)).await.unwrap();
    assert_ne!(a.record.id, b.record.id);
    // A key that is not printable ASCII is refused.
    let e = s
        .app
        .admit(draft("alice", Some("bad\nkey")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidField);
}

#[tokio::test]
async fn audio_as_base64_upload_id_and_url() {
    use base64::Engine as _;
    let s = start_with(|c| c.fetch.allow_private_addresses = true).await;
    s.app.set_ready(true);
    let clip = wav(12.0, 22_050);

    let mut d = draft("alice", None);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&clip);
    d.style = Some(StyleInput::Audio(AudioInput::Base64(format!(
        "data:audio/wav;base64,{b64}"
    ))));
    let job = s.app.admit(d).await.unwrap().record;
    let StyleSpec::Upload(blob) = &job.spec.style else {
        panic!("{:?}", job.spec.style)
    };
    assert_eq!(s.app.blobs().read(blob).await.unwrap(), clip);

    // The stored upload is used as it is, not copied.
    let mut d = draft("alice", None);
    d.style = Some(StyleInput::Audio(AudioInput::UploadId(blob.clone())));
    let before = uploads(&s);
    let job2 = s.app.admit(d).await.unwrap().record;
    assert_eq!(job2.spec.style, StyleSpec::Upload(blob.clone()));
    assert_eq!(uploads(&s), before);

    // A URL on a loopback server.
    let served = clip.clone();
    let router = axum::Router::new().route(
        "/style.wav",
        axum::routing::get(move || {
            let body = served.clone();
            async move { ([("content-type", "audio/wav")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut d = draft("alice", None);
    d.style = Some(StyleInput::Audio(AudioInput::Url(format!(
        "http://{addr}/style.wav"
    ))));
    let job3 = s.app.admit(d).await.unwrap().record;
    let StyleSpec::Upload(blob3) = &job3.spec.style else {
        panic!()
    };
    assert_eq!(s.app.blobs().read(blob3).await.unwrap(), clip);

    // A missing file on the same server is a fetch failure naming the style audio.
    let mut d = draft("alice", None);
    d.style = Some(StyleInput::Audio(AudioInput::Url(format!(
        "http://{addr}/nope.wav"
    ))));
    let e = s.app.admit(d).await.unwrap_err();
    assert_eq!(
        code_and_field(&e),
        (ErrorCode::FetchFailed, Some(Field::StyleAudio))
    );
    // An unknown upload id is a bad reference.
    let mut d = draft("alice", None);
    d.style = Some(StyleInput::Audio(AudioInput::UploadId(
        "0123456789abcdef0123456789abcdef.wav".into(),
    )));
    let e = s.app.admit(d).await.unwrap_err();
    assert_eq!(
        code_and_field(&e),
        (ErrorCode::InvalidReference, Some(Field::StyleAudio))
    );
}

#[tokio::test]
async fn internal_urls_are_refused_by_default() {
    let s = start().await;
    s.app.set_ready(true);
    for url in [
        "http://127.0.0.1:9/a.wav",
        "http://[::1]:9/a.wav",
        "file:///etc/passwd",
    ] {
        let mut d = draft("alice", None);
        d.style = Some(StyleInput::Audio(AudioInput::Url(url.into())));
        let e = s.app.admit(d).await.unwrap_err();
        assert_eq!(
            code_and_field(&e),
            (ErrorCode::InvalidUrl, Some(Field::StyleAudio)),
            "{url}"
        );
    }
}

#[tokio::test]
async fn refusals_carry_codes_and_neutral_fields_and_leave_no_uploads() {
    let s = start_with(|c| c.limits.per_owner_active = 1).await;
    s.app.set_ready(true);
    type Change = Box<dyn Fn(&mut Draft)>;
    let cases: Vec<(Change, ErrorCode, Field)> = vec![
        (
            Box::new(|d| d.seconds = None),
            ErrorCode::MissingField,
            Field::Length,
        ),
        (
            Box::new(|d| d.seconds = Some(50)),
            ErrorCode::InvalidLength,
            Field::Length,
        ),
        (
            Box::new(|d| d.style = None),
            ErrorCode::MissingField,
            Field::Style,
        ),
        (
            Box::new(|d| d.style = Some(StyleInput::Prompt(" ".into()))),
            ErrorCode::InvalidStylePrompt,
            Field::StylePrompt,
        ),
        (
            Box::new(|d| d.lyrics = "[00:75.00] impossible".into()),
            ErrorCode::InvalidLyrics,
            Field::Lyrics,
        ),
        (
            Box::new(|d| d.variants = Some(6)),
            ErrorCode::InvalidField,
            Field::Variants,
        ),
        (
            Box::new(|d| d.output_subdir = Some("../up".into())),
            ErrorCode::InvalidOutputDir,
            Field::OutputDir,
        ),
        (
            Box::new(|d| {
                d.style = Some(StyleInput::Audio(AudioInput::Bytes {
                    bytes: wav(3.0, 22_050),
                    hint: Some("wav".into()),
                }))
            }),
            ErrorCode::InvalidAudio,
            Field::StyleAudio,
        ),
    ];
    for (i, (change, code, field)) in cases.into_iter().enumerate() {
        let mut d = draft("alice", None);
        change(&mut d);
        let e = s.app.admit(d).await.unwrap_err();
        assert_eq!(code_and_field(&e), (code, Some(field)), "case {i}: {e}");
    }
    // Over the owner's limit after its upload was checked: the upload is not kept.
    s.app.admit(draft("alice", None)).await.unwrap();
    let before = uploads(&s);
    let mut d = draft("alice", None);
    d.style = Some(StyleInput::Audio(AudioInput::Bytes {
        bytes: wav(12.0, 22_050),
        hint: Some("wav".into()),
    }));
    let e = s.app.admit(d).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::OwnerLimit);
    assert_eq!(uploads(&s), before);
}

#[tokio::test]
async fn chinese_and_mixed_lyrics_are_admitted_from_every_front_end() {
    // The test bundle sings Chinese with its own small Mandarin lexicon (docs/mandarin.md).
    let s = start().await;
    s.app.set_ready(true);
    for source in Source::ALL {
        let mut d = draft("alice", None);
        d.meta = JobMeta::anonymous(source);
        d.lyrics = "[00:01.00]你好，我们来了\n[00:06.00]月亮 moonlight 的梦想\n".into();
        let admitted = s.app.admit(d).await;
        assert!(admitted.is_ok(), "{source:?}: {:?}", admitted.err());
    }
    // What is wrong with a Chinese line is still named: here its timestamp.
    let mut d = draft("alice", None);
    d.lyrics = "[00:01.00]你好\n[00:75.00]月亮\n".into();
    let e = s.app.admit(d).await.unwrap_err();
    assert_eq!(
        code_and_field(&e),
        (ErrorCode::InvalidLyrics, Some(Field::Lyrics))
    );
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[tokio::test]
async fn a_prompt_over_the_token_limit_is_refused_at_admission() {
    use refrain_model::prompt::{MAX_PROMPT_CHARS, MAX_PROMPT_TOKENS};
    use reqwest::StatusCode;
    let s = start().await;
    s.app.set_ready(true);
    // The test bundle's tokenizer splits words from punctuation: one token per character here,
    // so this prompt is well under the character limit and over the token limit.
    let prompt = "a!".repeat(300);
    assert!(prompt.chars().count() < MAX_PROMPT_CHARS);
    assert!(prompt.chars().count() > MAX_PROMPT_TOKENS);

    let mut d = draft("alice", None);
    d.style = Some(StyleInput::Prompt(prompt.clone()));
    let e = s.app.admit(d).await.unwrap_err();
    assert_eq!(
        code_and_field(&e),
        (ErrorCode::InvalidStylePrompt, Some(Field::StylePrompt))
    );
    assert!(e.to_string().contains("tokens"), "{e}");

    // Each API names the field its own way, and nothing was queued.
    let (status, _, body) = s
        .post(support::http::form_from(&[
            ("ref_prompt", &prompt),
            ("audio_length", "95"),
        ]))
        .await;
    support::http::assert_field_error(status, &body, StatusCode::BAD_REQUEST, "ref_prompt");
    assert!(body["error"].as_str().unwrap().contains("tokens"), "{body}");
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&serde_json::json!({"style": {"prompt": prompt}, "length_seconds": 95}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_style_prompt", "{body}");
    assert_eq!(body["error"]["field"], "style.prompt", "{body}");
    assert_eq!(s.app.store().count(protocol::JobState::Queued).unwrap(), 0);
}
