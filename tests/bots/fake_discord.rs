//! A fake Discord on loopback (axum), enough for `refrain bots` to run against: the REST API
//! under `/api/v10` (gateway discovery, command registration, interaction callbacks, edits of
//! the original answer, follow-ups, channel messages), the gateway as a WebSocket (`/gw`: Hello,
//! READY on Identify, heartbeat ACKs, and the interactions the test sends:
//! [`FakeDiscord::slash_song`], [`FakeDiscord::press`]), attachment downloads (`/files/…`),
//! the REST calls recorded with their time and uploaded files ([`FakeDiscord::calls`]), and
//! `429 retry_after` answers to the next edits on demand ([`FakeDiscord::throttle_edits`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

pub const APP_ID: u64 = 900_000_000_000_000_001;
pub const CHANNEL: u64 = 900_000_000_000_000_002;
pub const BOT_ID: u64 = 900_000_000_000_000_003;

/// One REST call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path after `/api/v10`.
    pub path: String,
    pub at: Instant,
    /// The JSON body (of a multipart body: its `payload_json`).
    pub body: Value,
    /// Uploaded files: (file name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    /// Whether the fake answered with success (not a 429).
    pub answered_ok: bool,
}

impl Call {
    pub fn content(&self) -> &str {
        self.body["content"].as_str().unwrap_or("")
    }

    /// An edit of the original answer of interaction token `token`.
    pub fn is_edit_of(&self, token: &str) -> bool {
        self.method == "PATCH" && self.path.ends_with(&format!("/{token}/messages/@original"))
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    /// Edits of original answers still to be answered 429, and the retry_after (seconds).
    throttled: (u32, f64),
    files: HashMap<String, Vec<u8>>,
    next_id: u64,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    gateway: broadcast::Sender<Value>,
    url: Arc<Mutex<String>>,
}

/// The fake, on its own runtime thread; stops when dropped.
pub struct FakeDiscord {
    pub url: String,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl FakeDiscord {
    pub fn start() -> FakeDiscord {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Shared {
            inner: Arc::default(),
            gateway: broadcast::channel(64).0,
            url: Arc::default(),
        };
        shared.inner.lock().unwrap().next_id = 950_000_000_000_000_000;
        let app = Router::new()
            .route("/api/v10/{*path}", any(rest))
            .route("/gw", get(gateway))
            .route("/files/{name}", get(file))
            .layer(axum::extract::DefaultBodyLimit::max(100 * 1024 * 1024))
            .with_state(shared.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *shared.url.lock().unwrap() = url.clone();
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeDiscord {
            url,
            shared,
            _runtime: runtime,
        }
    }

    fn next_id(&self) -> u64 {
        let mut inner = self.shared.inner.lock().unwrap();
        inner.next_id += 1;
        inner.next_id
    }

    /// Waits until the bot's gateway connection identified (READY sent).
    pub fn wait_ready(&self, timeout: Duration) {
        self.wait_for(timeout, "the gateway's READY", |calls| {
            calls.iter().any(|c| c.path.ends_with("/commands"))
        });
    }

    fn dispatch(&self, event: Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.shared.gateway.receiver_count() == 0 {
            assert!(Instant::now() < deadline, "the bot never connected");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.shared
            .gateway
            .send(json!({"op": 0, "t": "INTERACTION_CREATE", "s": 2, "d": event}))
            .unwrap();
    }

    /// A file a message could carry, served at `/files/<name>`; returns its attachment JSON.
    pub fn attachment(&self, name: &str, bytes: Vec<u8>, content_type: &str) -> Value {
        let id = self.next_id();
        let size = bytes.len();
        self.shared
            .inner
            .lock()
            .unwrap()
            .files
            .insert(name.to_string(), bytes);
        json!({"id": id.to_string(), "filename": name, "size": size,
            "url": format!("{}/files/{name}", self.url),
            "proxy_url": format!("{}/files/{name}", self.url),
            "content_type": content_type})
    }

    /// `/song` from `user` with `options` (`[{name, type, value}]`) and attachments (id →
    /// attachment JSON), reporting `upload_limit`; returns the interaction's token.
    pub fn slash_song(
        &self,
        user: u64,
        options: Value,
        attachments: Value,
        upload_limit: u64,
    ) -> String {
        let id = self.next_id();
        let token = format!("tok{id}");
        self.dispatch(json!({
            "id": id.to_string(),
            "application_id": APP_ID.to_string(),
            "type": 2,
            "data": {"id": "1", "name": "song", "type": 1, "options": options,
                "resolved": {"attachments": attachments}},
            "channel_id": CHANNEL.to_string(),
            "user": user_json(user),
            "token": token,
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "attachment_size_limit": upload_limit,
        }));
        token
    }

    /// `user` presses the button `custom_id` under a message; returns the interaction's token.
    pub fn press(&self, user: u64, custom_id: &str) -> String {
        let id = self.next_id();
        let token = format!("tok{id}");
        self.dispatch(json!({
            "id": id.to_string(),
            "application_id": APP_ID.to_string(),
            "type": 3,
            "data": {"custom_id": custom_id, "component_type": 2},
            "channel_id": CHANNEL.to_string(),
            "user": user_json(user),
            "token": token,
            "version": 1,
            "message": message_json(1, &json!({"content": "a song"})),
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {},
            "attachment_size_limit": 10 * 1024 * 1024,
        }));
        token
    }

    /// The next `times` edits of an original answer get 429 with `retry_after` seconds.
    pub fn throttle_edits(&self, times: u32, retry_after: f64) {
        self.shared.inner.lock().unwrap().throttled = (times, retry_after);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.inner.lock().unwrap().calls.clone()
    }

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
                    .map(|c| (c.method.clone(), c.path.clone(), c.content().to_string()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn user_json(id: u64) -> Value {
    json!({"id": id.to_string(), "username": format!("user{id}"), "discriminator": "0",
        "global_name": null, "avatar": null})
}

fn message_json(id: u64, body: &Value) -> Value {
    json!({"id": id.to_string(), "channel_id": CHANNEL.to_string(),
        "author": {"id": BOT_ID.to_string(), "username": "refrain", "discriminator": "0",
            "avatar": null, "bot": true},
        "content": body["content"].as_str().unwrap_or(""),
        "timestamp": "2026-12-03T00:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
        "attachments": [], "embeds": [], "pinned": false, "type": 0,
        "components": body.get("components").cloned().unwrap_or(json!([]))})
}

async fn rest(
    State(shared): State<Shared>,
    Path(path): Path<String>,
    method: Method,
    request: Request,
) -> Response {
    let path = format!("/{path}");
    let multipart = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/"));
    let (body, files) = if multipart {
        read_multipart(request).await
    } else {
        let bytes = Bytes::from_request(request, &()).await.unwrap_or_default();
        (
            serde_json::from_slice(&bytes).unwrap_or(json!({})),
            Vec::new(),
        )
    };
    let mut inner = shared.inner.lock().unwrap();
    let mut call = Call {
        method: method.to_string(),
        path: path.clone(),
        at: Instant::now(),
        body: body.clone(),
        files,
        answered_ok: true,
    };
    if method == Method::PATCH && path.ends_with("/messages/@original") && inner.throttled.0 > 0 {
        inner.throttled.0 -= 1;
        let retry_after = inner.throttled.1;
        call.answered_ok = false;
        inner.calls.push(call);
        let body = json!({"message": "You are being rate limited.", "retry_after": retry_after,
            "global": false});
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", "5".parse().unwrap());
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert(
            "x-ratelimit-reset-after",
            retry_after.to_string().parse().unwrap(),
        );
        headers.insert(
            "retry-after",
            (retry_after.ceil() as u64).to_string().parse().unwrap(),
        );
        return response;
    }
    inner.calls.push(call);
    inner.next_id += 1;
    let id = inner.next_id;
    drop(inner);
    let url = shared.url.lock().unwrap().replace("http://", "ws://");
    match (method, path.as_str()) {
        (Method::GET, "/gateway/bot") => Json(json!({"url": format!("{url}/gw"), "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0,
                "max_concurrency": 1}}))
        .into_response(),
        (Method::GET, "/gateway") => Json(json!({"url": format!("{url}/gw")})).into_response(),
        (Method::PUT, p) if p.ends_with("/commands") => Json(json!([])).into_response(),
        (Method::POST, p) if p.starts_with("/interactions/") => {
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::DELETE, _) => StatusCode::NO_CONTENT.into_response(),
        (Method::PATCH | Method::POST, _) => Json(message_json(id, &body)).into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown", "code": 0})),
        )
            .into_response(),
    }
}

async fn file(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    match shared.inner.lock().unwrap().files.get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn read_multipart(request: Request) -> (Value, Vec<(String, Vec<u8>)>) {
    let mut body = json!({});
    let mut files = Vec::new();
    let Ok(mut parts) = Multipart::from_request(request, &()).await else {
        return (body, files);
    };
    while let Ok(Some(field)) = parts.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field.bytes().await.unwrap_or_default();
        match file_name {
            Some(file_name) => files.push((file_name, bytes.to_vec())),
            None if name == "payload_json" => {
                body = serde_json::from_slice(&bytes).unwrap_or(json!({}))
            }
            None => {}
        }
    }
    (body, files)
}

/// The gateway: Hello, then READY on Identify, ACKs to heartbeats, and every dispatched event.
async fn gateway(State(shared): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| session(shared, socket))
}

async fn session(shared: Shared, mut socket: WebSocket) {
    let mut events = shared.gateway.subscribe();
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 5000}});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let url = shared.url.lock().unwrap().replace("http://", "ws://");
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(message)) = incoming else { return };
                let Message::Text(text) = message else { continue };
                let payload: Value = serde_json::from_str(&text).unwrap_or(json!({}));
                let answer = match payload["op"].as_u64() {
                    Some(1) => json!({"op": 11}),
                    Some(2) => json!({"op": 0, "t": "READY", "s": 1, "d": {
                        "v": 10,
                        "user": {"id": BOT_ID.to_string(), "username": "refrain",
                            "discriminator": "0", "avatar": null, "bot": true},
                        "guilds": [], "session_id": "session",
                        "resume_gateway_url": format!("{url}/gw"),
                        "shard": [0, 1],
                        "application": {"id": APP_ID.to_string(), "flags": 0}}}),
                    _ => continue,
                };
                if socket.send(Message::Text(answer.to_string().into())).await.is_err() {
                    return;
                }
            }
            event = events.recv() => {
                let Ok(event) = event else { return };
                if socket.send(Message::Text(event.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
