//! Headless Chromium for the web page test (`tests/web.rs`), driven over the Chrome DevTools
//! Protocol on `--remote-debugging-pipe`: NUL-terminated JSON messages on file descriptors 3 and
//! 4, so no WebSocket client and no port are needed. [`chromium_binary`] finds the browser
//! (`CHROMIUM`, else the usual names on `PATH`; missing: skipped with a message, or a failure in
//! CI); [`Browser`] launches it with one page and offers what the test needs: navigate, evaluate,
//! click at an element's centre, type, key presses, screenshots.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::log_file;

/// Waits on the browser: only against hangs.
const GENEROUS: Duration = Duration::from_secs(300);

/// Chromium: `CHROMIUM`, else the first of the usual names on `PATH`. Missing: `None` with a
/// message, or a panic in CI.
pub fn chromium_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("Chromium not found in CI: apt-get install chromium (or set CHROMIUM)");
    }
    eprintln!("skipped: Chromium not found (apt-get install chromium, or set CHROMIUM)");
    None
}

/// Headless Chromium with one page, driven over the DevTools protocol on a pipe.
pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Uncaught exceptions and console errors of the page.
    errors: Vec<String>,
    /// The URL and headers of every request the page made.
    requests: Vec<(String, Value)>,
    /// What the page did, for the message of a test that waited in vain: console output other
    /// than errors, requests, answers and failed loads.
    notes: Vec<String>,
    log: PathBuf,
}

impl Browser {
    /// Starts Chromium (its profile and log under `dir`) and opens a blank page.
    pub fn launch(binary: &Path, dir: &Path) -> Browser {
        let profile = dir.join("chromium-profile");
        let log = dir.join("chromium.log");
        // The shell hands our pipes to Chromium as descriptors 3 (commands) and 4 (answers).
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >&2"#)
            .arg(binary)
            .args([
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--no-proxy-server",
                "--mute-audio",
                "--hide-scrollbars",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(&log))
            .spawn()
            .expect("start Chromium");
        let mut child = child;
        let to = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    match serde_json::from_slice(&message[..end]) {
                        Ok(value) => {
                            if tx.send(value).is_err() {
                                return;
                            }
                        }
                        Err(e) => eprintln!("unreadable DevTools message: {e}"),
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            to,
            from,
            next_id: 0,
            session: String::new(),
            errors: Vec::new(),
            requests: Vec::new(),
            notes: Vec::new(),
            log,
        };
        let target = browser.send("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser.send(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        browser.call("Log.enable", json!({}));
        browser.call("Network.enable", json!({}));
        browser
    }

    /// A command to the browser (no session yet) or, once attached, to the page.
    pub fn send(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        if let Err(e) = self.to.write_all(&bytes).and_then(|()| self.to.flush()) {
            panic!(
                "{method}: Chromium is gone ({e}); its log: {}",
                self.log_text()
            );
        }
        let deadline = Instant::now() + GENEROUS;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.from.recv_timeout(left) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer from Chromium"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{method}: Chromium is gone; its log: {}", self.log_text())
                }
            };
            if message["id"].as_u64() == Some(id) {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            self.note(&message);
        }
    }

    /// A command to the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        assert!(!self.session.is_empty(), "no page attached");
        self.send(method, params)
    }

    /// Keeps what an event says about errors in the page.
    pub fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("an exception");
                self.errors.push(text.to_string());
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors.push(params["args"].to_string());
            }
            Some("Runtime.consoleAPICalled") => {
                self.notes
                    .push(format!("console.{}: {}", params["type"], params["args"]));
            }
            // Refused content (the page's Content-Security-Policy) and the like; not the API's
            // error answers the test provokes (network entries).
            Some("Log.entryAdded")
                if params["entry"]["level"] == "error"
                    && params["entry"]["source"] != "network" =>
            {
                let entry = &params["entry"];
                self.errors
                    .push(format!("{}: {}", entry["url"], entry["text"]).replace('"', ""));
            }
            Some("Network.requestWillBeSent") => {
                let request = &params["request"];
                let url = request["url"].as_str().unwrap_or_default().to_string();
                self.notes.push(format!(
                    "{} {url}",
                    request["method"].as_str().unwrap_or("?")
                ));
                self.requests.push((url, request["headers"].clone()));
            }
            Some("Network.responseReceived") => {
                let response = &params["response"];
                self.notes
                    .push(format!("{} {}", response["status"], response["url"]).replace('"', ""));
            }
            Some("Network.loadingFailed") => {
                self.notes.push(format!(
                    "failed {}: {}",
                    params["requestId"], params["errorText"]
                ));
            }
            _ => {}
        }
    }

    pub fn requests(&mut self) -> Vec<(String, Value)> {
        while let Ok(message) = self.from.try_recv() {
            self.note(&message);
        }
        self.requests.clone()
    }

    pub fn page_errors(&mut self) -> Vec<String> {
        // Collect what arrived since the last command.
        while let Ok(message) = self.from.try_recv() {
            self.note(&message);
        }
        self.errors.clone()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Loads `url` and waits until the page's script has run.
    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            &format!("{url} loaded"),
            "document.readyState === 'complete' && !!document.getElementById('song-form') \
             && document.getElementById('api-key') !== null",
        );
    }

    /// The value of a JavaScript expression (promises awaited); panics on an exception.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = answer.get("exceptionDetails") {
            panic!("{expression}: {details}");
        }
        answer["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy and returns its value; panics (with what the
    /// page shows) after a generous time, only against hangs.
    pub fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + GENEROUS;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let shown = self.eval(
                    "(() => { const t = (id) => document.getElementById(id)?.textContent; \
                     return {state: document.getElementById('current')?.dataset.state, \
                     status: t('status-line'), detail: t('status-detail'), \
                     errors: [...document.querySelectorAll('.field-error')] \
                     .filter((e) => !e.hidden).map((e) => e.id + ': ' + e.textContent)}; })()",
                );
                let errors = self.page_errors();
                let recent = self.notes.len().saturating_sub(40);
                panic!(
                    "waited in vain for {what} ({expression}); the page shows {shown}; \
                     errors: {errors:?}; what the page did last:\n{}",
                    self.notes[recent..].join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sets a field's value as typing would (an `input` and a `change` event).
    pub fn fill(&mut self, selector: &str, value: &str) {
        let script = format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); e.value = {val}; \
             e.dispatchEvent(new Event('input', {{bubbles: true}})); \
             e.dispatchEvent(new Event('change', {{bubbles: true}})); return e.value; }})()",
            sel = json!(selector),
            val = json!(value),
        );
        assert_eq!(self.eval(&script), json!(value), "{selector}");
    }

    /// Clicks the middle of an element with the mouse (it must be visible and on top).
    pub fn click(&mut self, selector: &str) {
        let script = format!(
            "(() => {{ const e = document.querySelector({sel}); \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             const x = r.left + r.width / 2, y = r.top + r.height / 2; \
             const top = document.elementFromPoint(x, y); \
             return {{x, y, hit: top === e || e.contains(top)}}; }})()",
            sel = json!(selector),
        );
        let point = self.eval(&script);
        assert_eq!(
            point["hit"], true,
            "{selector} is hidden or covered: {point}"
        );
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": point["x"], "y": point["y"],
                       "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Focuses an element and presses Enter, as a keyboard user would.
    /// Chooses `files` in the file input `selector`, as a person picking them would (the
    /// input's `change` event fires).
    pub fn set_files(&mut self, selector: &str, files: &[&Path]) {
        let root = self.call("DOM.getDocument", json!({"depth": 0}));
        let node = self.call(
            "DOM.querySelector",
            json!({"nodeId": root["root"]["nodeId"], "selector": selector}),
        );
        let node_id = node["nodeId"].as_u64().filter(|&id| id != 0);
        let node_id = node_id.unwrap_or_else(|| panic!("no element {selector}"));
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        self.call(
            "DOM.setFileInputFiles",
            json!({"nodeId": node_id, "files": files}),
        );
    }

    pub fn press_enter_on(&mut self, selector: &str) {
        let script = format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); \
             return document.activeElement === e; }})()",
            sel = json!(selector),
        );
        assert_eq!(
            self.eval(&script),
            json!(true),
            "{selector} takes the focus"
        );
        for kind in ["keyDown", "keyUp"] {
            let mut event = json!({"type": kind, "key": "Enter", "code": "Enter",
                                   "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13});
            if kind == "keyDown" {
                event["text"] = json!("\r");
            }
            self.call("Input.dispatchKeyEvent", event);
        }
    }

    /// A phone-sized viewport from now on.
    pub fn phone(&mut self) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
        );
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                            "scale": 1}}),
        );
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the screenshot).
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().take_while(|c| *c != b'=').collect();
        let mut n = 0u32;
        for (i, c) in data.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let produced = data.len().saturating_sub(1);
        for i in 0..produced {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}
