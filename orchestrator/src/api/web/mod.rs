//! The web page at `/`: a song form, live progress, players and downloads, and a list of recent
//! jobs, all on top of Refrain's own API (`/api/v1`, `docs/api.md`). Four static files built
//! into the binary with `include_str!` — plain HTML, CSS and JavaScript, no build step, nothing
//! fetched from elsewhere:
//!
//! * `GET /` — `index.html`;
//! * `GET /lib.js` and `GET /app.js` — the page's script, in two parts (`lib.js`: API client,
//!   storage, form helpers; `app.js`: the job on screen, recent jobs, start-up);
//! * `GET /style.css` — its style sheet.
//!
//! Each is served with its content type and `Cache-Control: no-cache` (browsers revalidate, so
//! a new binary's page is seen at once); the page with a `Content-Security-Policy` that allows
//! this origin only. The page itself needs no API key; the API calls it makes send the key the
//! user typed in (kept in the browser) as `Authorization: Bearer`. Players and download links
//! use each file's `public_url` (`/output/…`), which needs no key.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::service::App;

const INDEX_HTML: &str = include_str!("index.html");
const LIB_JS: &str = include_str!("lib.js");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// `GET /`, `GET /lib.js`, `GET /app.js` and `GET /style.css`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route(
            "/lib.js",
            get(|| async { page("text/javascript; charset=utf-8", LIB_JS) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE_CSS) }),
        )
}

/// Where the page may load from and connect to: its own origin only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

async fn index() -> Response {
    let mut response = page("text/html; charset=utf-8", INDEX_HTML).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(INDEX_HTML.contains(r#"src="/app.js""#));
        assert!(INDEX_HTML.contains(r#"src="/lib.js""#));
        assert!(INDEX_HTML.contains(r#"href="/style.css""#));
        for text in [INDEX_HTML, APP_JS, STYLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
