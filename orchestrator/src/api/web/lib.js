// Refrain's web page, part 1 of 2 (loaded before app.js, sharing its global scope): constants,
// storage, the API client, errors next to their fields and the song form's helpers. The page is
// a client of Refrain's own API (/api/v1, docs/api.md). No framework, no build step. The job being shown is followed through its Server-Sent Events, read with fetch()
// so that the API key, when one is set, travels as an Authorization header (EventSource cannot
// send headers, and a key in the URL would end up in logs).
"use strict";

const API = "/api/v1";
const KEY_STORE = "refrain.apiKey";
const RECENT_STORE = "refrain.recentJobs";
const CURRENT_STORE = "refrain.currentJob";
const RECENT_MAX = 20;
// How many times a dropped download of a job record is tried before the page says so.
const RECORD_ATTEMPTS = 4;
const FORMATS = ["wav", "mp3", "ogg"];
const FINAL_STATES = new Set(["succeeded", "failed", "cancelled"]);
const FINAL_KINDS = new Set(["succeeded", "failed", "cancelled", "expired"]);
const STAGES = {
  tokenize: "Reading the lyrics",
  style: "Working out the style",
  encode: "Encoding the reference song",
  sampling: "Sampling",
  decode: "Decoding the audio",
  done: "Writing the file",
};
// Where the API's error fields are shown: the id of the input they belong to.
const FIELD_INPUTS = {
  lyrics: "lyrics",
  "style.prompt": "prompt",
  "style.audio": "reference",
  "style.upload_id": "reference",
  style: "style",
  length_seconds: "length",
  seed: "seed",
  variants: "variants",
  format: "format",
  file: "reference",
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Storage (localStorage may be unavailable: private windows, disabled storage).

function load(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    if (value === null || value === undefined || value === "") localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Not kept across reloads; the page still works.
  }
}

function recentIds() {
  const ids = load(RECENT_STORE, []);
  return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
}

function remember(id) {
  save(RECENT_STORE, [id, ...recentIds().filter((x) => x !== id)].slice(0, RECENT_MAX));
}

function forget(id) {
  save(RECENT_STORE, recentIds().filter((x) => x !== id));
}

// ---------------------------------------------------------------------------------------------
// The API.

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function authHeaders() {
  const key = load(KEY_STORE, "");
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(method, path, { json, body, signal, headers } = {}) {
  const init = { method, signal, headers: { Accept: "application/json", ...authHeaders(), ...headers } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "The server cannot be reached.", null);
  }
  return readAnswer(response);
}

async function readAnswer(response) {
  let data = null;
  const text = await response.text();
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.ok) return data;
  const error = (data && data.error) || {};
  const message =
    error.message || (data && data.message) || `The server answered ${response.status} ${response.statusText}.`;
  throw new ApiError(response.status, error.code || "http_error", message, error.field || null);
}

function jobPath(id) {
  return `${API}/jobs/${encodeURIComponent(id)}`;
}

function audioPath(id, variant, format) {
  return `${jobPath(id)}/audio/${variant}?format=${format}`;
}

// ---------------------------------------------------------------------------------------------
// Errors next to their fields.

function clearErrors() {
  for (const el of document.querySelectorAll(".field-error")) {
    el.textContent = "";
    el.hidden = true;
  }
  for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

// Shows `message` under the input `inputId` (or the form) and returns the element to focus.
function showError(inputId, message) {
  const target = inputId && $(`${inputId}-error`) ? inputId : "form";
  const box = $(`${target}-error`);
  box.textContent = message;
  box.hidden = false;
  const input = $(target);
  if (input && target !== "form") {
    input.setAttribute("aria-invalid", "true");
    if (target === "api-key") $("key-box").open = true;
    if (target === "reference") chooseStyle("upload");
    if (target === "prompt") chooseStyle("prompt");
    return input.tagName === "FIELDSET" ? input.querySelector("input:checked") : input;
  }
  return box;
}

function showApiError(error, fallbackInput) {
  if (error.name === "AbortError") return null;
  let input = FIELD_INPUTS[error.field] || null;
  if (error.status === 401 || error.status === 403) input = "api-key";
  if (!input && error.field === "body") input = fallbackInput || null;
  const text = error.field && !FIELD_INPUTS[error.field] ? `${error.message} (${error.field})` : error.message;
  return showError(input || fallbackInput || null, text);
}

// ---------------------------------------------------------------------------------------------
// The form.

function chooseStyle(kind) {
  $(`style-kind-${kind}`).checked = true;
  $("prompt-box").hidden = kind !== "prompt";
  $("upload-box").hidden = kind !== "upload";
}

function styleKind() {
  return $("style-kind-upload").checked ? "upload" : "prompt";
}

function pad(n, width) {
  return String(n).padStart(width, "0");
}

function stamp(seconds) {
  const hundredths = Math.round(seconds * 100);
  const minutes = Math.floor(hundredths / 6000);
  const rest = hundredths - minutes * 6000;
  return `[${pad(minutes, 2)}:${pad(Math.floor(rest / 100), 2)}.${pad(rest % 100, 2)}]`;
}

const TIMESTAMP = /^\s*(\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\]\s*)+/;
const METADATA = /^\s*\[[a-z#]+:[^\]]*\]\s*$/i;

// Spreads the lyric lines evenly over `length` seconds: a short intro first (a tenth of the
// song, at most 10 s) and a few seconds of room after the last line. Timestamps the lines
// already have are replaced; metadata tags and blank lines are dropped.
function spreadLines(text, length) {
  const lines = text
    .split(/\r?\n/)
    .filter((line) => !METADATA.test(line))
    .map((line) => line.replace(TIMESTAMP, "").trim())
    .filter((line) => line.length > 0);
  if (lines.length === 0) return null;
  const intro = Math.min(10, length / 10);
  const outro = Math.min(5, length / 20);
  const span = (length - intro - outro) / lines.length;
  return lines.map((line, i) => `${stamp(intro + i * span)} ${line}`).join("\n");
}

function chosenLength() {
  const value = $("length").value.trim();
  if (!/^\d+$/.test(value)) return null;
  const n = Number(value);
  return n >= 95 && n <= 285 ? n : null;
}

function onSpread() {
  clearErrors();
  const length = chosenLength();
  if (length === null) {
    showError("length", "Choose a length of 95, or 96 to 285 seconds, first.")?.focus();
    return;
  }
  const spread = spreadLines($("lyrics").value, length);
  if (spread === null) {
    showError("lyrics", "Write some lyric lines first, one per line.")?.focus();
    return;
  }
  $("lyrics").value = spread;
  $("lyrics").focus();
}

// The request body, or null after showing what is wrong with the form.
function readForm() {
  const errors = [];
  const lyrics = $("lyrics").value;
  if (!lyrics.trim()) errors.push(["lyrics", "Write the lyrics (LRC lines, or plain lines and spread them)."]);
  const length = chosenLength();
  if (length === null) errors.push(["length", "The length is 95, or 96 to 285 seconds."]);
  const body = { lyrics, length_seconds: length, format: $("format").value };
  const seed = $("seed").value.trim();
  if (seed) {
    if (!/^\d+$/.test(seed) || !Number.isSafeInteger(Number(seed))) {
      errors.push(["seed", `The seed is a whole number from 0 to ${Number.MAX_SAFE_INTEGER}.`]);
    } else {
      body.seed = Number(seed);
    }
  }
  const variants = $("variants").value.trim();
  if (!/^[1-5]$/.test(variants)) errors.push(["variants", "Between 1 and 5 variants."]);
  else body.variants = Number(variants);
  if (styleKind() === "prompt") {
    const prompt = $("prompt").value.trim();
    if (!prompt) errors.push(["prompt", "Describe the style, e.g. “bright acoustic pop with piano”."]);
    body.style = { prompt };
  } else if ($("reference").files.length !== 1) {
    errors.push(["reference", "Choose a reference recording."]);
  }
  if (errors.length) {
    const focus = errors.map(([input, message]) => showError(input, message))[0];
    focus?.focus();
    return null;
  }
  return body;
}

// Uploads of this page, by file, so a second song from the same recording does not send it again.
const uploaded = new WeakMap();

async function uploadReference() {
  const file = $("reference").files[0];
  if (uploaded.has(file)) return uploaded.get(file);
  const form = new FormData();
  form.append("file", file, file.name);
  $("submit").textContent = "Uploading…";
  const answer = await api("POST", `${API}/uploads`, { body: form });
  uploaded.set(file, answer.upload_id);
  return answer.upload_id;
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  const body = readForm();
  if (!body) return;
  const button = $("submit");
  button.disabled = true;
  button.textContent = "Starting…";
  try {
    if (styleKind() === "upload") {
      try {
        body.style = { upload_id: await uploadReference() };
        button.textContent = "Starting…";
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        showApiError(e, "reference")?.focus();
        return;
      }
    }
    let job;
    try {
      job = await api("POST", `${API}/jobs`, { json: body });
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (e.field && e.field.startsWith("style") && styleKind() === "upload") {
        uploaded.delete($("reference").files[0]);
      }
      showApiError(e)?.focus();
      return;
    }
    remember(job.id);
    follow(job.id, job);
    renderRecent();
    // On a phone the song panel is below the form.
    $("current").scrollIntoView({ block: "nearest" });
  } finally {
    button.disabled = false;
    button.textContent = "Generate";
  }
}

