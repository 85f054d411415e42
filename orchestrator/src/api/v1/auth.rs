//! API keys for Refrain's own API. Keys live in `<data_dir>/api-keys.json` as SHA-256 hashes
//! (`refrain keys add NAME` makes one and prints it once; the plain key is never stored or
//! logged). With no keys the API is open and every caller is `anonymous` — the loopback
//! default; `refrain serve` refuses to listen on another address without keys unless
//! `api.allow_unauthenticated = true`. With keys, every `/api/v1` request needs
//! `Authorization: Bearer <key>` or `x-api-key: <key>` (401 otherwise), and the key's name is
//! the job owner (`key:<name>`) for limits and fair share. The file is re-read when it changes,
//! so keys added or removed take effect without a restart.
//!
//! A key may also be trusted to act for end users of a front end of its own (a chat bot): a
//! key made with `refrain keys add NAME --on-behalf-of telegram,discord` may create jobs whose
//! owner is `telegram:<user>` or `discord:<user>` (`on_behalf_of` of `POST /api/v1/jobs`), so
//! that per-owner limits and fair share apply to each person rather than to the bot as a whole.
//! Other keys are refused when they try. Without keys (the open loopback default, where every
//! caller is trusted alike) any caller may, for any kind [`is_delegable_kind`] allows.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use protocol::Owner;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
use crate::app::App;
use crate::error::OrchestratorError;

/// Who is calling: the owner of the jobs it creates.
#[derive(Debug, Clone)]
pub struct Caller {
    pub owner: Owner,
    /// The owner kinds (`telegram`, `discord`, …) this caller may create jobs for
    /// (`on_behalf_of`); empty for most keys.
    pub on_behalf_of: Vec<String>,
    /// No keys are configured: the caller may create jobs for any delegable kind.
    pub open: bool,
}

impl Caller {
    /// Whether this caller may create jobs for end users of owner kind `kind`.
    pub fn may_act_for(&self, kind: &str) -> bool {
        is_delegable_kind(kind) && (self.open || self.on_behalf_of.iter().any(|k| k == kind))
    }
}

/// One stored key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    pub created_at: String,
    /// Owner kinds whose end users this key may create jobs for (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_behalf_of: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFileBody {
    keys: Vec<KeyEntry>,
}

/// The key file, cached and re-read when its modification time changes.
#[derive(Debug)]
pub struct ApiKeys {
    path: PathBuf,
    cache: Mutex<(Option<SystemTime>, Vec<KeyEntry>)>,
}

impl ApiKeys {
    pub fn new(path: PathBuf) -> ApiKeys {
        ApiKeys {
            path,
            cache: Mutex::new((None, Vec::new())),
        }
    }

    /// The keys now on disk (an unreadable file counts as no keys, logged).
    pub fn current(&self) -> Vec<KeyEntry> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != modified || modified.is_none() {
            cache.1 = match read(&self.path) {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot read the API key file");
                    Vec::new()
                }
            };
            cache.0 = modified;
        }
        cache.1.clone()
    }

    /// The name of the key `presented`, if it is one.
    pub fn check(&self, presented: &str) -> Option<String> {
        self.entry(presented).map(|k| k.name)
    }

    /// The stored entry of the key `presented`, if it is one.
    pub fn entry(&self, presented: &str) -> Option<KeyEntry> {
        let hash = hex(&Sha256::digest(presented.trim().as_bytes()));
        self.current().into_iter().find(|k| k.sha256 == hash)
    }
}

fn read(path: &Path) -> Result<Vec<KeyEntry>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<KeyFileBody>(&bytes)
            .map(|b| b.keys)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds a key named `name` to the file at `path` and returns the new key (shown once).
/// Names are 1–64 letters, digits, `-`, `_` or `.`, unique in the file.
pub fn add_key(path: &Path, name: &str) -> Result<String, String> {
    add_key_for(path, name, &[])
}

/// Whether `kind` may name an owner kind of `on_behalf_of`: 1–32 lower-case letters, digits or
/// `-`, and none of the kinds the server gives itself (`key`, `anonymous`, `schedule`, `ip`).
pub fn is_delegable_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 32
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !matches!(kind, "key" | "anonymous" | "schedule" | "ip")
}

/// [`add_key`] for a key that may also create jobs for end users of the owner kinds
/// `on_behalf_of` (`telegram`, `discord`).
pub fn add_key_for(path: &Path, name: &str, on_behalf_of: &[String]) -> Result<String, String> {
    if let Some(bad) = on_behalf_of.iter().find(|k| !is_delegable_kind(k)) {
        return Err(format!(
            "{bad:?} cannot be an owner kind of --on-behalf-of (1 to 32 lower-case letters, \
             digits or '-'; not key, anonymous, schedule or ip)"
        ));
    }
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err("a key name is 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    let mut keys = read(path)?;
    if keys.iter().any(|k| k.name == name) {
        return Err(format!("there is already a key named {name:?}"));
    }
    let key = format!(
        "rf_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    );
    keys.push(KeyEntry {
        name: name.to_string(),
        sha256: hex(&Sha256::digest(key.as_bytes())),
        created_at: super::view::timestamp(crate::store::now_ms()),
        on_behalf_of: on_behalf_of.to_vec(),
    });
    let body = serde_json::to_vec_pretty(&KeyFileBody { keys }).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, body).map_err(|e| format!("{}: {e}", temp.display()))?;
    std::fs::rename(&temp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key)
}

/// The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>`.
pub(crate) fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v);
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(key)
}

/// Middleware of every `/api/v1` route: finds the [`Caller`] or answers 401.
pub async fn authenticate(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let keys = app.api_keys();
    let caller = if keys.current().is_empty() {
        Caller {
            owner: Owner::anonymous(),
            on_behalf_of: Vec::new(),
            open: true,
        }
    } else {
        match presented(request.headers()).and_then(|k| keys.entry(k)) {
            Some(entry) => Caller {
                owner: Owner::new("key", &entry.name),
                on_behalf_of: entry.on_behalf_of,
                open: false,
            },
            None => {
                return ApiError(OrchestratorError::Unauthorized(
                    "an API key is required: Authorization: Bearer <key> or x-api-key".into(),
                ))
                .into_response()
            }
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-keys.json");
        let keys = ApiKeys::new(path.clone());
        assert!(keys.current().is_empty());
        let alice = add_key(&path, "alice").unwrap();
        assert!(alice.starts_with("rf_"));
        let stored = std::fs::read_to_string(&path).unwrap();
        assert!(!stored.contains(&alice), "the plain key is never stored");
        assert_eq!(keys.check(&alice).as_deref(), Some("alice"));
        assert_eq!(keys.check("rf_wrong"), None);
        assert!(add_key(&path, "alice").is_err());
        assert!(add_key(&path, "bad name").is_err());
        let bob = add_key(&path, "bob").unwrap();
        assert_eq!(keys.check(&bob).as_deref(), Some("bob"));

        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {bob}").parse().unwrap());
        assert_eq!(presented(&h), Some(bob.as_str()));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", alice.parse().unwrap());
        assert_eq!(presented(&h), Some(alice.as_str()));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn keys_may_act_for_the_end_users_of_named_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-keys.json");
        let keys = ApiKeys::new(path.clone());
        let bot = add_key_for(&path, "bot", &["telegram".into(), "discord".into()]).unwrap();
        assert_eq!(
            keys.entry(&bot).unwrap().on_behalf_of,
            vec!["telegram".to_string(), "discord".to_string()]
        );
        let plain = add_key(&path, "plain").unwrap();
        assert!(keys.entry(&plain).unwrap().on_behalf_of.is_empty());
        for bad in ["key", "anonymous", "Telegram", "", "a:b"] {
            assert!(add_key_for(&path, "x", &[bad.into()]).is_err(), "{bad}");
        }
    }
}
