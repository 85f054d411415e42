//! The Riffusion-style API (documented in `docs/riffusion-api.md`): clients written for that
//! hosted API work against Refrain by changing the base URL and key. A thin facade over the job
//! core, translating and nothing more:
//!
//! * `POST /riffusion/generate` — professional mode: structured lyrics (`[Verse]`, `[Chorus]`, no
//!   timestamps: timed by `refrain_model::lyrics::structure`), `tags` (the style prompt) and a
//!   title; with `morph` a transform of an earlier song or an upload ([`input`]);
//! * `POST /riffusion/generate/topic` — inspiration mode: an instrumental with the topic as its
//!   style prompt (the bundle has no lyric writer, so no lyrics are invented);
//! * `GET /riffusion/feed/{id1},{id2}` — the takes, with real progress ([`view`]);
//! * `POST /riffusion/upload` — audio by URL (through the outbound guard) or multipart, stored
//!   as an upload whose id is an `audio_upload_id`.
//!
//! Every request makes **two jobs**, independent takes with their own random seeds. Every route
//! needs `Authorization: Bearer <key>` (or `x-api-key`) with one of the service's API keys, which
//! owns the takes: another key's take is "not found". Errors are `{"error": {"code", "message",
//! "field"}}` with the catalogue's codes and statuses ([`error`]).

pub mod error;
pub mod input;
pub mod routes;
pub mod view;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use protocol::Owner;

pub use self::error::RiffError;
use crate::api::routing::Routes;
use crate::app::App;
use crate::error::OrchestratorError;

/// The key's owner, put in the request by [`authenticate`].
#[derive(Debug, Clone)]
pub struct KeyOwner(pub Owner);

/// Every Riffusion route, behind the key check.
pub fn routes(app: App) -> Routes {
    Routes::new()
        .post("/riffusion/generate", routes::generate)
        .post("/riffusion/generate/topic", routes::generate_topic)
        .get("/riffusion/feed/{ids}", routes::feed)
        .post("/riffusion/upload", routes::upload)
        .map_router(|router| router.route_layer(middleware::from_fn_with_state(app, authenticate)))
}

/// `Authorization: Bearer <key>` (or `x-api-key`) must name one of the service's keys, whether
/// or not Refrain's own API is open: the hosted API always needs one.
async fn authenticate(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let keys = app.api_keys();
    let presented = crate::api::v1::auth::presented(request.headers());
    match presented.and_then(|k| keys.check(k)) {
        Some(name) => {
            request
                .extensions_mut()
                .insert(KeyOwner(Owner::new("key", &name)));
            next.run(request).await
        }
        None => {
            let why = if keys.current().is_empty() {
                "no API key is configured on this server: add one with `refrain keys add NAME` \
                 and send it as Authorization: Bearer <key>"
            } else if presented.is_some() {
                "the bearer token is not a valid API key"
            } else {
                "an API key is required: Authorization: Bearer <key>"
            };
            RiffError(OrchestratorError::Unauthorized(why.into())).into_response()
        }
    }
}
