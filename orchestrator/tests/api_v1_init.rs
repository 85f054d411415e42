//! `init` in Refrain's own API (`POST /api/v1/jobs`): the sampler starts from an earlier job's
//! song or an upload, re-noised at `strength` (the job spec's `InitSpec`, as the Riffusion
//! API's `swap_sound`). The shape is `edit`'s (`song` is one of job, upload_id, audio_url,
//! audio_base64); everything else — the strength's range, no `edit` beside it, a song that has
//! succeeded and covers every frame — is the job core's check, named `init.song` /
//! `init.strength` in this API's error shape.

use crate::riffusion_common;
use crate::support;

use protocol::{InitSpec, SongRef};
use reqwest::StatusCode;
use riffusion_common::finish;
use serde_json::{json, Value};
use support::http::wav;
use support::{start, TestService};

async fn create(s: &TestService, idem: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = s.client.post(format!("{}/api/v1/jobs", s.base)).json(body);
    if let Some(k) = idem {
        request = request.header("Idempotency-Key", k);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

fn job(init: Value) -> Value {
    json!({"lyrics": "[00:10.00] a new line", "style": {"prompt": "dark jazz"},
        "length_seconds": 95, "init": init})
}

#[track_caller]
fn refused(status: StatusCode, body: &Value, code: &str, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}

#[tokio::test]
async fn init_starts_a_job_from_a_song_and_the_core_checks_it() {
    let s = start().await;
    let (status, source) = create(
        &s,
        None,
        &json!({"lyrics": "", "length_seconds": 95,
        "style": {"prompt": "pop"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{source}");
    let source_id = protocol::JobId::parse(source["id"].as_str().unwrap()).unwrap();

    // Not succeeded yet: the core refuses the reference, under init.song.
    let init = json!({"song": {"job": source_id}, "strength": 0.5});
    let (status, e) = create(&s, None, &job(init.clone())).await;
    refused(status, &e, "invalid_reference", "init.song");

    finish(&s, &source_id, 95.2).await;
    let (status, created) = create(&s, Some("init-1"), &job(init.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["request"]["init"], init);
    assert_eq!(created["request"]["edit"], Value::Null);
    let id = protocol::JobId::parse(created["id"].as_str().unwrap()).unwrap();
    let record = s.app.store().get(&id).unwrap().unwrap();
    assert_eq!(
        record.spec.init,
        Some(InitSpec {
            song: SongRef::Output(source_id.clone()),
            strength: 0.5
        })
    );
    // The strength is part of the request: another one under the key is a conflict.
    let (status, again) = create(&s, Some("init-1"), &job(init.clone())).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &created["id"]));
    let other = json!({"song": {"job": source_id}, "strength": 0.25});
    let (status, e) = create(&s, Some("init-1"), &job(other)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");

    // An upload as the song; a job without init shows null.
    let upload = s
        .client
        .post(format!("{}/api/v1/uploads", s.base))
        .header("content-type", "audio/wav")
        .body(wav(96.0, 22_050))
        .send()
        .await
        .unwrap();
    let upload: Value = upload.json().await.unwrap();
    let init = json!({"song": {"upload_id": upload["upload_id"]}, "strength": 1});
    let (status, created) = create(&s, None, &job(init)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["request"]["init"],
        json!({"song": {"audio": "uploaded"}, "strength": 1.0})
    );
    assert_eq!(source["request"]["init"], Value::Null);

    // What the core refuses, named in this API's spelling.
    for strength in [json!(-0.1), json!(1.5)] {
        let init = json!({"song": {"job": source_id}, "strength": strength});
        let (status, e) = create(&s, None, &job(init)).await;
        refused(status, &e, "invalid_field", "init.strength");
    }
    let mut both = job(json!({"song": {"job": source_id}, "strength": 0.5}));
    both["edit"] = json!({"song": {"job": source_id}, "segments": [[10, 20]]});
    let (status, e) = create(&s, None, &both).await;
    refused(status, &e, "invalid_field", "init.song");
    let short = s
        .client
        .post(format!("{}/api/v1/uploads", s.base))
        .header("content-type", "audio/wav")
        .body(wav(30.0, 22_050))
        .send()
        .await
        .unwrap();
    let short: Value = short.json().await.unwrap();
    let init = json!({"song": {"upload_id": short["upload_id"]}, "strength": 0.5});
    let (status, e) = create(&s, None, &job(init)).await;
    refused(status, &e, "invalid_audio", "init.song");
    // The shape: exactly one song, and a strength.
    let two = json!({"song": {"job": source_id, "upload_id": "x"}, "strength": 0.5});
    let (status, e) = create(&s, None, &job(two)).await;
    refused(status, &e, "invalid_field", "init.song");
    let (status, e) = create(
        &s,
        None,
        &job(json!({"song": {"job": "nope"}, "strength": 0.5})),
    )
    .await;
    refused(status, &e, "invalid_reference", "init.song");
    let (status, e) = create(&s, None, &job(json!({"song": {"job": source_id}}))).await;
    refused(status, &e, "invalid_field", "body");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("strength"),
        "{e}"
    );
}
