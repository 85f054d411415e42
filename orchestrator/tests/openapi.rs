//! The OpenAPI document (`GET /openapi.json`) and the docs on it (`GET /docs`), on the real
//! service:
//!
//! * the document is OpenAPI 3.1 (it parses into `oas3`'s independent model), consistent (every
//!   `$ref` resolves, every path template parameter is declared and every declared one is in
//!   the template, operation ids are unique, security schemes and tags exist) and — where
//!   `openapi-spec-validator` is installed (`.ci/run` installs it in `.venv-ci/`) — valid
//!   against the OpenAPI 3.1 schema;
//! * every route of the router's table (`api::routes`) has an operation with its method, and
//!   every operation is a route; every hand-written `.route("…")` in the sources is in the table;
//!   every route of the table answers (no 405, not the fallback);
//! * what the API answers has the documented shape (job, job list, error);
//! * the docs are Swagger UI from the binary, loading nothing from elsewhere.

use crate::support;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use refrain_orchestrator::api;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::start;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(s: &support::TestService) -> Value {
    let r = s
        .client
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

/// `{*file}` (axum's catch-all) is `{file}` in OpenAPI.
fn openapi_path(axum_path: &str) -> String {
    axum_path.replace("{*", "{")
}

/// The names in `{…}` of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

/// Follows a local `$ref` (`#/components/…`) in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// Every `$ref` anywhere in `value`, with where it is.
fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    if let Value::String(r) = v {
                        out.push((at.to_string(), r.clone()));
                    }
                }
                refs(v, &format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A parameter, with a `$ref` followed.
fn parameter<'a>(doc: &'a Value, p: &'a Value) -> &'a Value {
    match p["$ref"].as_str() {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("unresolved {r}")),
        None => p,
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1() {
    let s = start().await;
    let doc = document(&s).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );

    // An independent model of OpenAPI 3.1 reads it.
    let text = serde_json::to_string(&doc).unwrap();
    let spec = oas3::from_json(&text).expect("the document parses as OpenAPI 3.1");
    let version = spec.validate_version().expect("a 3.1 version");
    assert_eq!((version.major, version.minor), (3, 1));
    assert!(spec.operations().count() > 20);
    for (path, method, operation) in spec.operations() {
        for p in &operation.parameters {
            p.resolve(&spec)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
        if let Some(body) = &operation.request_body {
            body.resolve(&spec)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
        let responses = operation.responses.as_ref().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        for (status, r) in responses {
            let r = r
                .resolve(&spec)
                .unwrap_or_else(|e| panic!("{method} {path} {status}: {e}"));
            for (media, content) in &r.content {
                if let Some(schema) = &content.schema {
                    schema
                        .resolve(&spec)
                        .unwrap_or_else(|e| panic!("{method} {path} {status} {media}: {e}"));
                }
            }
        }
    }

    // Every `$ref` anywhere resolves within the document.
    let mut all = Vec::new();
    refs(&doc, "", &mut all);
    assert!(all.len() > 20, "refs: {}", all.len());
    for (at, r) in &all {
        assert!(r.starts_with("#/"), "{at}: a ref outside the document: {r}");
        assert!(resolve(&doc, r).is_some(), "{at}: {r} does not resolve");
    }

    // Path parameters: every `{name}` of a template is declared `in: path`, required, and every
    // declared path parameter is in the template.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("bearer") && schemes.contains_key("api_key"));
    let tags: HashSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut operation_ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with('/'), "{path}");
        let expected = template_params(path);
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let mut declared = BTreeSet::new();
            let mut seen = HashSet::new();
            let own = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in shared.iter().chain(own.iter()) {
                let p = parameter(&doc, p);
                let (name, place) = (p["name"].as_str().unwrap(), p["in"].as_str().unwrap());
                assert!(
                    seen.insert((name.to_string(), place.to_string())),
                    "{method} {path}: {name} in {place} twice"
                );
                assert!(
                    ["path", "query", "header", "cookie"].contains(&place),
                    "{method} {path}: {name} in {place}"
                );
                if place == "path" {
                    assert_eq!(p["required"], true, "{method} {path}: {name} not required");
                    declared.insert(name.to_string());
                }
            }
            assert_eq!(declared, expected, "{method} {path}: path parameters");
            if let Some(id) = op["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_string()),
                    "operationId {id} twice"
                );
            }
            for t in op["tags"].as_array().into_iter().flatten() {
                assert!(
                    tags.contains(t.as_str().unwrap()),
                    "{method} {path}: tag {t}"
                );
            }
            for requirement in op["security"].as_array().into_iter().flatten() {
                for name in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(name), "{method} {path}: scheme {name}");
                }
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            for status in responses.keys() {
                assert!(
                    status == "default"
                        || (status.len() == 3 && status.parse::<u16>().is_ok_and(|s| s >= 100)),
                    "{method} {path}: status {status}"
                );
            }
            // Refrain's own API asks for an API key and shows its errors as `ErrorBody`; the
            // task API asks for `x-api-key` and shows the hosted API's error object.
            let unauthorized = responses
                .get("401")
                .map(|r| r["content"]["application/json"]["schema"].clone())
                .unwrap_or_default();
            if path.starts_with("/api/v1/task") || path.starts_with("/v1/") {
                assert_eq!(op["security"], json!([{"api_key": []}]), "{method} {path}");
                assert_eq!(unauthorized["$ref"], "#/components/schemas/TaskErrorBody");
            } else if path.starts_with("/api/v1/") {
                assert!(op["security"].as_array().is_some_and(|s| s.len() == 2));
                assert_eq!(unauthorized["$ref"], "#/components/schemas/ErrorBody");
            }
        }
    }

    validate_with_openapi_spec_validator(&text);
}

/// Runs `openapi-spec-validator` (PyPI) on the document when it is installed: `.ci/run` puts it
/// in `.venv-ci/`; `OPENAPI_SPEC_VALIDATOR` names another. In CI it must be there.
fn validate_with_openapi_spec_validator(text: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let validator = std::env::var_os("OPENAPI_SPEC_VALIDATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-ci/bin/openapi-spec-validator"));
    if !validator.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs openapi-spec-validator: {} is missing",
            validator.display()
        );
        eprintln!(
            "openapi-spec-validator not installed ({}): only the built-in checks ran",
            validator.display()
        );
        return;
    }
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .expect("runs openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_route_is_documented_and_every_operation_is_a_route() {
    let s = start().await;
    let doc = document(&s).await;
    let paths = doc["paths"].as_object().unwrap();
    let table = api::routes(s.app.clone());
    let table = table.table();
    assert!(table.len() > 20, "{table:?}");

    let mut routes = HashSet::new();
    for route in table {
        let path = openapi_path(route.path);
        let method = route.method.to_ascii_lowercase();
        assert!(
            paths
                .get(&path)
                .and_then(|item| item.get(&method))
                .is_some(),
            "{} {} is served but not in the OpenAPI document: add #[utoipa::path] to its handler \
             and list it in api::openapi::ApiDoc",
            route.method,
            route.path
        );
        assert!(
            routes.insert((method, path)),
            "{route:?} twice in the table"
        );
    }
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_none() {
                continue;
            }
            // A GET route answers HEAD too.
            let served = if method == "head" { "get" } else { method };
            assert!(
                routes.contains(&(served.to_string(), path.clone())),
                "{method} {path} is documented but not a route"
            );
        }
    }
}

/// The table holds the routes written with plain `Router::route` too (merged with
/// `Routes::merge_router`): every `.route("…")` in `src/api/` (outside unit tests) is in it.
#[tokio::test]
async fn hand_written_routes_are_in_the_table() {
    let s = start().await;
    let table = api::routes(s.app.clone());
    let paths: HashSet<&str> = table.table().iter().map(|r| r.path).collect();
    let mut found = 0;
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api")];
    while let Some(dir) = files.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.push(path);
                continue;
            }
            // `routing.rs` is the recorder: its `.route(path, …)` is every table entry's.
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("api/routing.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            // Unit tests may build routers of their own.
            let source = source.split("#[cfg(test)]").next().unwrap();
            let code: String = source
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (at, _) in code.match_indices(".route(") {
                let rest = code[at + ".route(".len()..].trim_start();
                let literal = rest
                    .strip_prefix('"')
                    .and_then(|r| r.split_once('"'))
                    .map(|(p, _)| p)
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: write route paths as string literals: .route({}",
                            path.display(),
                            &rest[..rest.len().min(40)]
                        )
                    });
                assert!(
                    paths.contains(literal),
                    "{}: .route(\"{literal}\") is not in api::routes' table (merge_router) \
                     nor in the OpenAPI document",
                    path.display()
                );
                found += 1;
            }
        }
    }
    assert!(
        found >= 3,
        "the web page's routes are written by hand: {found}"
    );
}

/// Each route of the table answers its method: no 405, never the fallback's 404.
#[tokio::test]
async fn every_route_of_the_table_answers() {
    let s = start().await;
    let table = api::routes(s.app.clone());
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for route in table.table() {
        let path = route
            .path
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{variant}", "1")
            .replace("{*file}", "no-such-file.wav");
        let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
        let r = client
            .request(method, format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{route:?}");
        assert!(
            !body.contains("No such endpoint."),
            "{route:?}: the fallback answered ({status})"
        );
    }
}

/// What the API answers has the properties its schema lists (and the required ones).
#[tokio::test]
async fn answers_have_the_documented_shape() {
    let s = start().await;
    let doc = document(&s).await;
    let check = |name: &str, value: &Value| {
        let schema = &doc["components"]["schemas"][name];
        let properties: BTreeSet<&str> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: {schema}"))
            .keys()
            .map(String::as_str)
            .collect();
        let keys: BTreeSet<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.is_subset(&properties),
            "{name}: {keys:?} not all in {properties:?}"
        );
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(
                keys.contains(required.as_str().unwrap()),
                "{name}: {required} missing from {value}"
            );
        }
    };

    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&json!({
            "lyrics": "[00:01.00] Hello, World! again\n[00:05.00] la la",
            "style": {"prompt": "warm piano ballad"},
            "length_seconds": 95,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let job: Value = r.json().await.unwrap();
    check("JobView", &job);
    check("Links", &job["links"]);

    let list: Value = s
        .client
        .get(format!("{}/api/v1/jobs", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("JobList", &list);

    for path in [
        "/api/v1/jobs/nope",
        "/api/v1/jobs?limit=0",
        "/api/v1/jobs?bogus=1",
    ] {
        let r = s
            .client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{path}");
        let body: Value = r.json().await.unwrap();
        check("ErrorBody", &body);
        check("ErrorDetail", &body["error"]);
    }

    let nodes: Value = s
        .client
        .get(format!("{}/api/v1/nodes", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    check("NodeList", &nodes);
    for node in nodes["nodes"].as_array().unwrap() {
        check("NodeView", node);
    }
}

/// `/docs` is Swagger UI from the binary on `/openapi.json`, loading only this origin's files.
#[tokio::test]
async fn the_docs_are_served_from_the_binary() {
    let s = start().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(format!("{}/docs", s.base)).send().await.unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/docs/");

    let r = client
        .get(format!("{}/docs/", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    let page = r.text().await.unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );

    // Every file the page names is here.
    let mut names = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            names.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    assert!(
        names.iter().any(|n| n.ends_with("swagger-ui-bundle.js")),
        "{names:?}"
    );
    for name in &names {
        let name = name.trim_start_matches("./");
        let r = client
            .get(format!("{}/docs/{name}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }

    let init = client
        .get(format!("{}/docs/swagger-initializer.js", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("\"/openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");
    assert!(
        !init.contains("http://") && !init.contains("https://"),
        "{init}"
    );

    let r = client
        .get(format!("{}/docs/no-such-file.js", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
