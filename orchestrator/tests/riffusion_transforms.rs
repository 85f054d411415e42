//! Riffusion transforms in process: inpaint and extend become edit mode (source by take or
//! upload, segments, the song's length, new lyrics timed inside the regenerated part), cover
//! makes the source the style reference, swap_sound starts the sampler from the source (the
//! core's init, with the variation strength), swap_vocals is refused with its reason, and every
//! bad transform has its code and field.

use crate::riffusion_common;
use crate::support;

use protocol::{SongRef, StyleSpec};
use reqwest::{Method, StatusCode};
use riffusion_common::start;
use riffusion_common::{add_key, call, finish, ids, refused, upload, LYRICS};
use serde_json::{json, Value};
use support::http::wav;

#[tokio::test]
async fn transforms_map_onto_edit_mode_and_style_audio_or_are_refused() {
    let s = start().await;
    let key = add_key(&s, "client");
    let other = add_key(&s, "other");
    let post = |body: Value, key: String| {
        let s = &s;
        async move {
            call(
                s,
                Method::POST,
                "/riffusion/generate",
                Some(&key),
                Some(&body),
            )
            .await
        }
    };
    let (_, created) = post(json!({"lyrics": LYRICS}), key.clone()).await;
    let riff = ids(&created)[0].clone();
    let pending = ids(&created)[1].clone();
    finish(&s, &riff, 95.2).await;

    // Inpaint a take: edit mode over [10, 20), new lyrics timed inside the span.
    let morph = json!({"transform": "inpaint", "riff_id": riff.as_str(),
                       "replace_start_at": 10, "replace_end_at": 20});
    let (status, created) = post(
        json!({"lyrics": "[Verse]\nbrand new words\n", "morph": morph}),
        key.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["mode"], "inpaint");
    let record = s.app.store().get(&ids(&created)[0]).unwrap().unwrap();
    let edit = record.spec.edit.unwrap();
    assert_eq!(edit.song, SongRef::Output(riff.clone()));
    assert_eq!(edit.segments, vec![(10.0, 20.0)]);
    assert_eq!(record.spec.seconds, 95);
    assert_eq!(record.spec.lyrics, "[00:10.50] brand new words\n");

    // Extend an upload: keep 60 s, regenerate the rest of a 120 s song.
    let (_, up) = upload(&s, &key, wav(96.0, 44_100), "song.wav").await;
    let upload_id = up["id"].as_str().unwrap();
    let morph = json!({"transform": "extend", "audio_upload_id": upload_id, "crop_end_at": 60});
    let (status, created) = post(
        json!({"lyrics": "[Chorus]\ngoing on\n", "morph": morph}),
        key.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let record = s.app.store().get(&ids(&created)[1]).unwrap().unwrap();
    assert_eq!(record.spec.seconds, 120);
    let edit = record.spec.edit.unwrap();
    assert_eq!(edit.song, SongRef::Upload(upload_id.to_string()));
    assert_eq!(edit.segments, vec![(60.0, -1.0)]);
    assert_eq!(record.spec.lyrics, "[01:01.00] going on\n");
    let morph = json!({"transform": "extend", "riff_id": riff.as_str(), "crop_end_at": 90});
    let (status, created) = post(
        json!({"lyrics": LYRICS, "length_seconds": 200, "morph": morph}),
        key.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["length_seconds"], 200);

    // Cover: the take is the style reference.
    let morph = json!({"transform": "cover", "riff_id": riff.as_str()});
    let (status, created) = post(json!({"lyrics": LYRICS, "morph": morph}), key.clone()).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["style"], Value::Null);
    let record = s.app.store().get(&ids(&created)[0]).unwrap().unwrap();
    assert!(
        matches!(record.spec.style, StyleSpec::Upload(_)),
        "{:?}",
        record.spec.style
    );
    assert!(record.spec.edit.is_none());

    // swap_sound: the take's own lyrics in the new tags' style, the sampler starting from the
    // take re-noised with the variation strength.
    let morph = json!({"transform": "swap_sound", "riff_id": riff.as_str(),
                       "normalized_variation_strength": 0.25});
    let (status, created) = post(json!({"tags": "rock", "morph": morph}), key.clone()).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["mode"], "swap_sound");
    assert_eq!(created["style"], "rock");
    let source = s.app.store().get(&riff).unwrap().unwrap();
    for id in ids(&created) {
        let record = s.app.store().get(&id).unwrap().unwrap();
        let init = record.spec.init.clone().unwrap();
        assert_eq!(init.song, SongRef::Output(riff.clone()));
        assert_eq!(init.strength, 0.25);
        assert_eq!(record.spec.lyrics, source.spec.lyrics);
        assert_eq!(record.spec.seconds, 95);
        assert!(record.spec.edit.is_none());
        assert_eq!(record.spec.style, StyleSpec::Prompt("rock".into()));
    }
    // An upload's lyrics are not known: they are given (and timed); the strength defaults to
    // 0.5 and the song keeps the upload's length.
    let morph = json!({"transform": "swap_sound", "audio_upload_id": upload_id});
    let (status, created) = post(
        json!({"lyrics": "[Verse]\nsame words again\n", "morph": morph}),
        key.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let record = s.app.store().get(&ids(&created)[0]).unwrap().unwrap();
    let init = record.spec.init.unwrap();
    assert_eq!(init.song, SongRef::Upload(upload_id.to_string()));
    assert_eq!(init.strength, 0.5);
    assert_eq!(record.spec.seconds, 96);
    let morph = json!({"transform": "swap_sound", "audio_upload_id": upload_id});
    let (status, e) = post(json!({"morph": morph}), key.clone()).await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "missing_field",
        Some("lyrics"),
    );

    // Refusals, each with its code and field.
    let r = riff.as_str();
    let cases: Vec<(Value, StatusCode, &str, &str)> = vec![
        (
            json!({"transform": "swap_vocals", "riff_id": r}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported",
            "morph.transform",
        ),
        (
            json!({"transform": "swap_sound", "riff_id": r, "normalized_variation_strength": 1.5}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "morph.normalized_variation_strength",
        ),
        (
            json!({"transform": "swap_sound"}),
            StatusCode::BAD_REQUEST,
            "missing_field",
            "morph.source",
        ),
        (
            json!({"transform": "inpaint", "replace_start_at": 1, "replace_end_at": 2}),
            StatusCode::BAD_REQUEST,
            "missing_field",
            "morph.source",
        ),
        (
            json!({"transform": "cover", "riff_id": r, "audio_upload_id": upload_id}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "morph.source",
        ),
        (
            json!({"transform": "inpaint", "riff_id": r, "replace_start_at": 1}),
            StatusCode::BAD_REQUEST,
            "missing_field",
            "morph.replace_end_at",
        ),
        (
            json!({"transform": "inpaint", "riff_id": r, "replace_start_at": 5, "replace_end_at": 5}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "morph.replace_end_at",
        ),
        (
            json!({"transform": "inpaint", "riff_id": r, "replace_start_at": 50, "replace_end_at": 99}),
            StatusCode::BAD_REQUEST,
            "invalid_edit",
            "morph.replace_end_at",
        ),
        (
            json!({"transform": "extend", "riff_id": r}),
            StatusCode::BAD_REQUEST,
            "missing_field",
            "morph.crop_end_at",
        ),
        (
            json!({"transform": "extend", "riff_id": r, "crop_end_at": 95.5}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "morph.crop_end_at",
        ),
        (
            json!({"transform": "inpaint", "riff_id": pending.as_str(), "replace_start_at": 1, "replace_end_at": 2}),
            StatusCode::BAD_REQUEST,
            "invalid_reference",
            "morph.source",
        ),
        (
            json!({"transform": "inpaint", "audio_upload_id": "nope.wav", "replace_start_at": 1, "replace_end_at": 2}),
            StatusCode::BAD_REQUEST,
            "invalid_reference",
            "morph.source",
        ),
        (
            json!({"transform": "cover", "riff_id": "0123456789abcdef0123456789abcdef"}),
            StatusCode::NOT_FOUND,
            "not_found",
            "",
        ),
    ];
    for (morph, want, code, field) in cases {
        let (status, e) = post(json!({"lyrics": LYRICS, "morph": morph}), key.clone()).await;
        refused(status, &e, want, code, (!field.is_empty()).then_some(field));
    }
    // An extension needs 5 s after the crop point.
    let morph = json!({"transform": "extend", "riff_id": r, "crop_end_at": 93});
    let body = json!({"lyrics": LYRICS, "length_seconds": 95, "morph": morph});
    let (status, e) = post(body, key.clone()).await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_edit",
        Some("morph.crop_end_at"),
    );
    let (status, e) = post(
        json!({"lyrics": LYRICS,
        "morph": {"transform": "swap_vocals", "riff_id": r}}),
        key.clone(),
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("source-separation"),
        "{status} {e}"
    );
    // A short upload cannot be inpainted (its length is the song's), and another key's take
    // is not found.
    let (_, short) = upload(&s, &key, wav(30.0, 44_100), "short.wav").await;
    for morph in [
        json!({"transform": "inpaint", "audio_upload_id": short["id"],
               "replace_start_at": 1, "replace_end_at": 2}),
        json!({"transform": "swap_sound", "audio_upload_id": short["id"]}),
    ] {
        let (status, e) = post(json!({"lyrics": LYRICS, "morph": morph}), key.clone()).await;
        refused(
            status,
            &e,
            StatusCode::BAD_REQUEST,
            "invalid_audio",
            Some("morph.source"),
        );
    }
    // A source a little shorter than the 95.1 s song cannot cover it (the core's check).
    let (_, almost) = upload(&s, &key, wav(95.05, 44_100), "almost.wav").await;
    let morph = json!({"transform": "swap_sound", "audio_upload_id": almost["id"]});
    let (status, e) = post(json!({"lyrics": LYRICS, "morph": morph}), key.clone()).await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_audio",
        Some("morph.source"),
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cover every frame"),
        "{e}"
    );
    // A source a little shorter than the base model's 95.1 s song would leave frames it does
    // not have: refused at admission (the node would refuse it too).
    let (_, almost) = upload(&s, &key, wav(95.05, 44_100), "almost.wav").await;
    let morph = json!({"transform": "inpaint", "audio_upload_id": almost["id"],
                       "replace_start_at": 10, "replace_end_at": 40});
    let (status, e) = post(json!({"lyrics": "la la la", "morph": morph}), key.clone()).await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_edit",
        Some("morph"),
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("regenerate everything after"),
        "{e}"
    );
    let morph = json!({"transform": "cover", "riff_id": r});
    let (status, e) = post(json!({"lyrics": LYRICS, "morph": morph}), other).await;
    refused(status, &e, StatusCode::NOT_FOUND, "not_found", None);
}
