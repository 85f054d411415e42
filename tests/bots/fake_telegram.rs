//! A fake Telegram Bot API on loopback (axum), enough for `refrain bots` to run against:
//! `getUpdates` long polling fed by the test ([`FakeTelegram::send_text`],
//! [`FakeTelegram::press`]), the calls the bot makes recorded with their time
//! ([`FakeTelegram::calls`]), uploaded audio kept ([`FakeTelegram::audio`]), and `429
//! retry_after` answers to the next calls of a method on demand
//! ([`FakeTelegram::throttle`]). teloxide sends method names in PascalCase, so they are matched
//! case-insensitively.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// One call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    /// Lower-case method name (`editmessagetext`).
    pub method: String,
    pub at: Instant,
    /// The JSON body, or the text fields of a multipart body.
    pub body: Value,
    /// What the fake answered with (`true` unless throttled).
    pub answered_ok: bool,
}

/// An uploaded song (`sendAudio`).
#[derive(Debug, Clone)]
pub struct Audio {
    pub fields: Value,
    pub bytes: Vec<u8>,
    pub file_name: Option<String>,
}

#[derive(Default)]
struct Inner {
    updates: Vec<Value>,
    next_update: u64,
    next_message: i64,
    calls: Vec<Call>,
    audio: Vec<Audio>,
    /// method → (answers of 429 still to give, retry_after seconds).
    throttled: HashMap<String, (u32, u32)>,
    /// Files of the chat (`getFile`, `/file/bot<token>/<id>`), by file id.
    files: HashMap<String, Vec<u8>>,
}

#[derive(Clone, Default)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    new_update: Arc<Notify>,
}

/// The fake server, on its own runtime thread; stops when dropped.
pub struct FakeTelegram {
    pub url: String,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl FakeTelegram {
    pub fn start() -> FakeTelegram {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Shared::default();
        shared.inner.lock().unwrap().next_message = 100;
        let app = Router::new()
            .route("/{token}/{method}", any(method))
            .route("/file/{token}/{*path}", axum::routing::get(file))
            // Songs are larger than axum's default 2 MB body limit.
            .layer(axum::extract::DefaultBodyLimit::max(100 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeTelegram {
            url,
            shared,
            _runtime: runtime,
        }
    }

    fn push(&self, update: Value) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.next_update += 1;
        let mut update = update;
        update["update_id"] = json!(inner.next_update);
        inner.updates.push(update);
        drop(inner);
        self.shared.new_update.notify_waiters();
    }

    /// A text message from user `user` in their private chat (chat id = user id); returns its
    /// message id.
    pub fn send_text(&self, user: i64, text: &str) -> i64 {
        let id = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.next_message += 1;
            inner.next_message
        };
        self.push(json!({"message": {
            "message_id": id,
            "date": 1_700_000_000,
            "chat": {"id": user, "type": "private", "first_name": "Ann"},
            "from": {"id": user, "is_bot": false, "first_name": "Ann"},
            "text": text,
        }}));
        id
    }

    /// The message JSON of a new message from `user` with `content` (`{"text": …}`,
    /// `{"audio": …}`), not yet sent.
    fn user_message(&self, user: i64, content: Value) -> Value {
        let id = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.next_message += 1;
            inner.next_message
        };
        let mut message = json!({
            "message_id": id,
            "date": 1_700_000_000,
            "chat": {"id": user, "type": "private", "first_name": "Ann"},
            "from": {"id": user, "is_bot": false, "first_name": "Ann"},
        });
        for (k, v) in content.as_object().unwrap() {
            message[k] = v.clone();
        }
        message
    }

    /// An audio message (a recording of `mime_type`) from `user`; returns the message JSON,
    /// for [`FakeTelegram::reply_text`].
    pub fn send_audio(&self, user: i64, bytes: Vec<u8>, mime_type: &str) -> Value {
        let id = format!("file{}", bytes.len());
        let size = bytes.len();
        self.shared
            .inner
            .lock()
            .unwrap()
            .files
            .insert(id.clone(), bytes);
        let message = self.user_message(
            user,
            json!({"audio": {"file_id": id, "file_unique_id": id, "file_size": size,
                "duration": 12, "mime_type": mime_type}}),
        );
        self.push(json!({ "message": message.clone() }));
        message
    }

    /// A text message from `user` in reply to `replied`.
    pub fn reply_text(&self, user: i64, text: &str, replied: Value) {
        let message = self.user_message(user, json!({"text": text, "reply_to_message": replied}));
        self.push(json!({ "message": message }));
    }

    /// User `user` presses an inline button carrying `data`.
    pub fn press(&self, user: i64, data: &str) {
        self.push(json!({"callback_query": {
            "id": format!("cq{user}"),
            "from": {"id": user, "is_bot": false, "first_name": "Ann"},
            "chat_instance": "1",
            "data": data,
        }}));
    }

    /// The next `times` calls of `method` answer 429 with `retry_after` seconds.
    pub fn throttle(&self, method: &str, times: u32, retry_after: u32) {
        let mut inner = self.shared.inner.lock().unwrap();
        inner
            .throttled
            .insert(method.to_lowercase(), (times, retry_after));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.inner.lock().unwrap().calls.clone()
    }

    pub fn audio(&self) -> Vec<Audio> {
        self.shared.inner.lock().unwrap().audio.clone()
    }

    /// Waits until `check` holds for the calls so far; panics after `timeout`.
    pub fn wait_for(&self, timeout: Duration, what: &str, check: impl Fn(&[Call]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.calls()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; calls: {:#?}",
                self.calls()
                    .iter()
                    .map(|c| (c.method.clone(), c.body.get("text").cloned()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn method(
    State(shared): State<Shared>,
    Path((_token, method)): Path<(String, String)>,
    request: Request,
) -> Json<Value> {
    let method = method.to_lowercase();
    let multipart = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let (body, upload) = if multipart {
        read_multipart(request).await
    } else {
        let bytes = Bytes::from_request(request, &()).await.unwrap_or_default();
        (serde_json::from_slice(&bytes).unwrap_or(json!({})), None)
    };
    if method == "getupdates" {
        return Json(json!({"ok": true, "result": updates(&shared, &body).await}));
    }
    let mut inner = shared.inner.lock().unwrap();
    if let Some((left, retry_after)) = inner.throttled.get_mut(&method) {
        if *left > 0 {
            *left -= 1;
            let retry_after = *retry_after;
            inner.calls.push(Call {
                method,
                at: Instant::now(),
                body,
                answered_ok: false,
            });
            return Json(json!({"ok": false, "error_code": 429,
                "description": format!("Too Many Requests: retry after {retry_after}"),
                "parameters": {"retry_after": retry_after}}));
        }
    }
    inner.calls.push(Call {
        method: method.clone(),
        at: Instant::now(),
        body: body.clone(),
        answered_ok: true,
    });
    let result = match method.as_str() {
        "getme" => json!({"id": 1, "is_bot": true, "first_name": "Refrain",
            "username": "refrain_bot", "can_join_groups": true,
            "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false}),
        "sendmessage" | "sendaudio" => {
            inner.next_message += 1;
            let id = inner.next_message;
            if let Some(audio) = upload {
                inner.audio.push(audio);
            }
            message(id, &body)
        }
        "getfile" => {
            let id = body["file_id"].as_str().unwrap_or("").to_string();
            let size = inner.files.get(&id).map(Vec::len).unwrap_or(0);
            json!({"file_id": id, "file_unique_id": id, "file_size": size,
                "file_path": format!("music/{id}")})
        }
        "editmessagetext" => {
            let id = body["message_id"].as_i64().unwrap_or(0);
            message(id, &body)
        }
        _ => json!(true),
    };
    Json(json!({"ok": true, "result": result}))
}

/// A file download (`/file/bot<token>/music/<id>`).
async fn file(
    State(shared): State<Shared>,
    Path((_token, path)): Path<(String, String)>,
) -> Vec<u8> {
    let id = path.trim_start_matches("music/");
    let inner = shared.inner.lock().unwrap();
    inner.files.get(id).cloned().unwrap_or_default()
}

fn message(id: i64, body: &Value) -> Value {
    let chat = body["chat_id"]
        .as_i64()
        .or_else(|| body["chat_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    json!({"message_id": id, "date": 1_700_000_000,
        "chat": {"id": chat, "type": "private", "first_name": "Ann"},
        "from": {"id": 1, "is_bot": true, "first_name": "Refrain"},
        "text": body["text"].as_str().unwrap_or("")})
}

/// The updates after `offset`, waiting up to the request's timeout for one.
async fn updates(shared: &Shared, body: &Value) -> Vec<Value> {
    let offset = body["offset"].as_u64().unwrap_or(0);
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = shared.new_update.notified();
        {
            let mut inner = shared.inner.lock().unwrap();
            inner
                .updates
                .retain(|u| u["update_id"].as_u64().unwrap_or(0) >= offset);
            if !inner.updates.is_empty() {
                return inner.updates.clone();
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Vec::new();
        }
    }
}

async fn read_multipart(request: Request) -> (Value, Option<Audio>) {
    let mut fields = serde_json::Map::new();
    let mut audio = None;
    let Ok(mut parts) = Multipart::from_request(request, &()).await else {
        return (json!({}), None);
    };
    while let Ok(Some(field)) = parts.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.unwrap_or_default();
        // teloxide names the file part `audio`, or attaches it (`attach://<part>`).
        if file_name.is_some() || name == "audio" {
            audio = Some((bytes.to_vec(), file_name));
        } else {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            fields.insert(name, value);
        }
    }
    let body = Value::Object(fields);
    let audio = audio.map(|(bytes, file_name)| Audio {
        fields: body.clone(),
        bytes,
        file_name,
    });
    (body, audio)
}
