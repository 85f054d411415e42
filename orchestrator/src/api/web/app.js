// Refrain's web page, part 2 of 2 (after lib.js, whose constants and functions it uses): the job
// being shown — its live events, progress, result and cancel — the recent jobs, and start-up.

// ---------------------------------------------------------------------------------------------
// The job being shown: its state, progress, result and cancel button.

let current = null; // { id, controller, lastSeq, final, poll }

function setStatus({ line, detail = "", percent = null, busy = false }) {
  $("status-line").textContent = line || "";
  $("status-detail").textContent = detail;
  const bar = $("progress");
  if (percent === null || percent === undefined) {
    if (busy) bar.removeAttribute("value");
    else bar.value = 0;
  } else {
    bar.value = Math.max(0, Math.min(100, percent));
  }
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
}

function queueText(position) {
  if (position === null || position === undefined) return "Waiting in the queue.";
  if (position === 0) return "Waiting in the queue: next in line.";
  return `Waiting in the queue: ${position} ${position === 1 ? "job" : "jobs"} ahead.`;
}

// What a progress report (a job's `progress` or a progress event) says, for the status lines.
function progressTexts(p, attempt) {
  const stage = STAGES[p.stage] || p.stage || "Working";
  const parts = [];
  if (p.total) parts.push(`step ${p.step ?? 0} of ${p.total}`);
  if (typeof p.percent === "number") parts.push(`${Math.floor(p.percent)} %`);
  if (typeof p.eta_seconds === "number" && p.stage !== "done") parts.push(`about ${duration(p.eta_seconds)} left`);
  if (attempt > 1) parts.push(`attempt ${attempt}`);
  return { line: `Running: ${stage}.`, detail: parts.join(" · ") };
}

function setState(state) {
  $("current").dataset.state = state;
  const badge = $("job-state");
  badge.textContent = state;
  badge.className = `badge ${state}`;
  $("cancel").hidden = !(state === "queued" || state === "running");
  if (current) current.state = state;
}

// Shows a job record (GET /api/v1/jobs/{id}).
function showJob(job) {
  setState(job.state);
  const attempt = job.attempt || 1;
  if (job.state === "queued") {
    setStatus({
      line: queueText(job.queue_position),
      detail: job.error ? `The last attempt failed: ${job.error}` : "",
      busy: true,
    });
  } else if (job.state === "running") {
    if (job.progress) {
      const t = progressTexts(job.progress, attempt);
      setStatus({ ...t, percent: job.progress.percent ?? null, busy: true });
    } else {
      setStatus({ line: "Running: starting.", busy: true });
    }
  } else if (job.state === "succeeded") {
    const took = job.result && job.result.duration_seconds ? `A ${duration(job.result.duration_seconds)} song.` : "";
    setStatus({ line: "Done.", detail: took, percent: 100 });
    showResult(job);
  } else if (job.state === "failed") {
    setStatus({ line: `Failed: ${job.error || "the generation did not finish"}.`, percent: 0 });
  } else if (job.state === "cancelled") {
    setStatus({ line: "Cancelled.", percent: 0 });
  }
}

// Shows one event of the stream.
function showEvent(kind, data) {
  if (data.state) setState(data.state);
  const attempt = data.attempt || 1;
  switch (kind) {
    case "queued":
      setStatus({ line: queueText(data.queue_position), busy: true });
      break;
    case "started":
      setStatus({ line: "Running: starting.", detail: attempt > 1 ? `attempt ${attempt}` : "", busy: true });
      break;
    case "progress": {
      const t = progressTexts(data, attempt);
      setStatus({ ...t, percent: data.percent ?? null, busy: true });
      break;
    }
    case "retrying":
    case "requeued":
      setStatus({
        line: kind === "retrying" ? "Trying again after a failed attempt." : "Back in the queue.",
        detail: data.error || "",
        busy: true,
      });
      break;
    case "failed":
      setStatus({ line: `Failed: ${data.error || "the generation did not finish"}.`, percent: 0 });
      break;
    case "cancelled":
      setStatus({ line: "Cancelled.", percent: 0 });
      break;
    case "expired":
      setState(data.state || "failed");
      setStatus({ line: "Expired: the job and its files were deleted.", percent: 0 });
      break;
    default:
      break;
  }
}

function variantsOf(job) {
  const files = (job.result && job.result.files) || [];
  const variants = new Set(files.map((f) => f.variant).filter((v) => Number.isInteger(v)));
  const asked = job.request && job.request.variants;
  if (variants.size === 0) for (let v = 1; v <= (asked || 1); v++) variants.add(v);
  return [...variants].sort((a, b) => a - b);
}

function jobFormat(job) {
  const asked = job.request && job.request.format;
  return FORMATS.includes(asked) ? asked : "wav";
}

// The file's link for players and downloads: its `public_url` (`/output/…`), which needs no
// API key. An <audio> element or a download link makes its own requests and cannot send the
// key, and fetching a whole song into memory first would make the player wait for all of it
// (and fail where the browser cannot hold large blobs); the public link streams with `Range`.
// Formats not made yet are converted on first request under the same name.
function publicPath(job, variant, format) {
  const files = (job.result && job.result.files) || [];
  const exact = files.find((f) => f.variant === variant && f.format === format);
  if (exact) return exact.public_url;
  const same = files.find((f) => f.variant === variant && f.public_url);
  if (same) return same.public_url.replace(/\.[a-z0-9]+$/, `.${format}`);
  return audioPath(job.id, variant, format);
}

function downloadLink(job, variant, format, text) {
  const a = document.createElement("a");
  a.href = publicPath(job, variant, format);
  a.textContent = text;
  a.className = "download";
  a.download = `refrain-${job.id.slice(0, 8)}-${variant}.${format}`;
  a.dataset.format = format;
  return a;
}

// A player that cannot load its song says so and points at the download links.
function attachAudio(audio, path) {
  audio.addEventListener("error", () => {
    if (!audio.isConnected || audio.nextElementSibling?.classList.contains("player-error")) return;
    console.error(`loading ${path} failed: ${audio.error ? audio.error.code : "unknown error"}`);
    const note = document.createElement("p");
    note.className = "player-error";
    note.textContent = "The song could not be loaded; use a download link below.";
    audio.after(note);
  });
  audio.src = path;
}

function clearResult() {
  const box = $("result");
  box.replaceChildren();
  delete box.dataset.job;
}

function showResult(job) {
  const box = $("result");
  if (box.dataset.job === job.id) return;
  clearResult();
  box.dataset.job = job.id;
  const format = jobFormat(job);
  for (const variant of variantsOf(job)) {
    const figure = document.createElement("figure");
    figure.className = "variant";
    const caption = document.createElement("figcaption");
    caption.id = `variant-${variant}-title`;
    caption.textContent = `Variant ${variant}`;
    const audio = document.createElement("audio");
    audio.controls = true;
    audio.preload = "metadata";
    audio.setAttribute("aria-labelledby", caption.id);
    audio.dataset.variant = String(variant);
    attachAudio(audio, publicPath(job, variant, format));
    const links = document.createElement("p");
    links.className = "downloads";
    links.append("Download: ");
    FORMATS.forEach((f, i) => {
      if (i) links.append(" · ");
      const link = downloadLink(job, variant, f, f.toUpperCase());
      link.setAttribute("aria-label", `Download variant ${variant} as ${f.toUpperCase()}`);
      links.append(link);
    });
    figure.append(caption, audio, links);
    box.append(figure);
  }
}

function stopFollowing() {
  if (!current) return;
  current.controller.abort();
  clearInterval(current.poll);
  current = null;
}

// Shows job `id` (a record already at hand may be passed) and follows its events until it ends.
function follow(id, job) {
  stopFollowing();
  // With the record at hand, its events so far need not be replayed.
  const lastSeq = job && Number.isInteger(job.last_event) ? job.last_event : 0;
  current = { id, controller: new AbortController(), lastSeq, final: false, poll: null, state: null };
  save(CURRENT_STORE, id);
  $("current").hidden = false;
  $("current").dataset.job = id;
  $("job-id").textContent = id;
  clearResult();
  setState(job ? job.state : "queued");
  setStatus({ line: "Loading…", busy: true });
  const me = current;
  if (job) showJob(job);
  else refreshCurrent(me);
  // While queued, the position moves without events: look again now and then.
  me.poll = setInterval(() => {
    if (current === me && me.state === "queued") refreshCurrent(me);
  }, 3000);
  readEvents(me);
}

async function refreshCurrent(me) {
  try {
    const job = await api("GET", jobPath(me.id), { signal: me.controller.signal });
    if (current !== me) return;
    showJob(job);
    if (FINAL_STATES.has(job.state)) finish(me);
  } catch (e) {
    if (current !== me || e.name === "AbortError") return;
    if (e.status === 404) {
      setState("gone");
      setStatus({ line: "This job no longer exists (results are deleted after a while).", percent: 0 });
      $("cancel").hidden = true;
      finish(me);
    } else if (e instanceof ApiError) {
      setStatus({ line: e.message, busy: false });
      if (e.status === 401 || e.status === 403) showApiError(e);
    }
  }
}

function finish(me) {
  if (me.final) return;
  me.final = true;
  clearInterval(me.poll);
  me.controller.abort();
  renderRecent();
}

// Reads the job's Server-Sent Events with fetch(), resuming after the last seen event when the
// connection drops, until a final event or until another job is shown.
async function readEvents(me) {
  let delay = 1000;
  while (current === me && !me.final) {
    try {
      const headers = { Accept: "text/event-stream", ...authHeaders() };
      if (me.lastSeq) headers["Last-Event-ID"] = String(me.lastSeq);
      const response = await fetch(`${jobPath(me.id)}/events`, { headers, signal: me.controller.signal });
      if (!response.ok) await readAnswer(response);
      delay = 1000;
      await parseEvents(response.body, (event) => onEvent(me, event));
    } catch (e) {
      if (e.name === "AbortError" || current !== me) return;
      if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
        await refreshCurrent(me);
        return;
      }
    }
    if (current !== me || me.final) return;
    // The stream ended without a final event (the server restarted, the network dropped): see
    // where the job is, then resume.
    await refreshCurrent(me);
    if (me.final) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

async function parseEvents(stream, handle) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { id: null, kind: "message", data: [] };
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let field = colon < 0 ? "" : line.slice(colon + 1);
        if (field.startsWith(" ")) field = field.slice(1);
        if (name === "id") event.id = field;
        else if (name === "event") event.kind = field;
        else if (name === "data") event.data.push(field);
      }
      if (event.data.length) handle(event);
    }
  }
}

function onEvent(me, event) {
  if (current !== me) return;
  const seq = Number(event.id);
  if (Number.isInteger(seq) && seq > me.lastSeq) me.lastSeq = seq;
  let data;
  try {
    data = JSON.parse(event.data.join("\n"));
  } catch {
    return;
  }
  showEvent(event.kind, data);
  if (FINAL_KINDS.has(event.kind)) {
    if (event.kind === "succeeded") {
      // The record has the result's files and the request (variants, format).
      me.final = true;
      clearInterval(me.poll);
      me.controller.abort();
      showFinal(me);
    } else {
      finish(me);
    }
  }
}

// Loads the record of a job that succeeded (its result's files and the request's variants and
// format) and shows it; a dropped connection is tried again a few times.
async function showFinal(me, attempt = 1) {
  try {
    const job = await api("GET", jobPath(me.id));
    if (current === me) showJob(job);
    renderRecent();
  } catch (e) {
    if (current !== me || !(e instanceof ApiError)) return;
    if (e.code === "network" && attempt < RECORD_ATTEMPTS) {
      setTimeout(() => showFinal(me, attempt + 1), 1000 * attempt);
    } else {
      setStatus({ line: e.message });
      renderRecent();
    }
  }
}

async function onCancel() {
  if (!current) return;
  const me = current;
  const button = $("cancel");
  button.disabled = true;
  try {
    const job = await api("DELETE", jobPath(me.id));
    if (current === me) {
      showJob(job);
      if (FINAL_STATES.has(job.state)) finish(me);
    }
  } catch (e) {
    if (e instanceof ApiError && current === me) {
      setStatus({ line: e.code === "job_finished" ? "The job had already finished." : e.message });
      refreshCurrent(me);
    }
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Recent jobs (their ids are kept in this browser).

function firstLyric(job) {
  const lyrics = (job.request && job.request.lyrics) || "";
  for (const line of lyrics.split(/\r?\n/)) {
    const text = line.replace(TIMESTAMP, "").trim();
    if (text && !METADATA.test(line)) return text;
  }
  return "";
}

function when(job) {
  const raw = job.created_at || (job.created_ms ? new Date(job.created_ms).toISOString() : null);
  if (!raw) return "";
  const date = new Date(raw);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

let recentRender = 0;

async function renderRecent() {
  const turn = ++recentRender;
  const ids = recentIds();
  const list = $("recent-list");
  $("recent-empty").hidden = ids.length > 0;
  $("recent-clear").hidden = ids.length === 0;
  const jobs = await Promise.all(
    ids.map((id) =>
      api("GET", jobPath(id)).then(
        (job) => ({ id, job }),
        (error) => ({ id, error }),
      ),
    ),
  );
  if (turn !== recentRender) return;
  list.replaceChildren(...jobs.map(recentItem));
}

function recentItem({ id, job, error }) {
  const li = document.createElement("li");
  li.dataset.job = id;
  const head = document.createElement("div");
  head.className = "recent-head";
  const title = document.createElement("span");
  title.className = "recent-title";
  const badge = document.createElement("span");
  const state = job ? job.state : error && error.status === 404 ? "gone" : "unknown";
  li.dataset.state = state;
  badge.className = `badge ${state}`;
  badge.textContent = state;
  title.textContent = job ? firstLyric(job) || `Job ${id.slice(0, 8)}` : `Job ${id.slice(0, 8)}`;
  head.append(title, " ", badge);
  const meta = document.createElement("p");
  meta.className = "hint";
  if (job) {
    const bits = [when(job)];
    if (job.request && job.request.length_seconds) bits.push(`${job.request.length_seconds} s`);
    if (job.state === "queued" && job.queue_position !== null && job.queue_position !== undefined) {
      bits.push(job.queue_position === 0 ? "next in line" : `${job.queue_position} ahead`);
    }
    if (job.state === "running" && job.progress && typeof job.progress.percent === "number") {
      bits.push(`${Math.floor(job.progress.percent)} %`);
    }
    if (job.state === "failed" && job.error) bits.push(job.error);
    meta.textContent = bits.filter(Boolean).join(" · ");
  } else {
    meta.textContent = error && error.status === 404 ? "No longer on the server." : (error && error.message) || "";
  }
  const actions = document.createElement("p");
  actions.className = "recent-actions";
  if (job) {
    const show = document.createElement("button");
    show.type = "button";
    show.className = "secondary small";
    show.textContent = "Show";
    show.setAttribute("aria-label", `Show job ${id.slice(0, 8)}`);
    show.addEventListener("click", () => {
      follow(id);
      $("current").scrollIntoView({ behavior: "smooth", block: "start" });
      $("current-title").setAttribute("tabindex", "-1");
      $("current-title").focus({ preventScroll: true });
    });
    actions.append(show);
    if (job.state === "succeeded") {
      const format = jobFormat(job);
      for (const variant of variantsOf(job)) {
        actions.append(" ", downloadLink(job, variant, format, `Variant ${variant} (${format.toUpperCase()})`));
      }
    }
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary small";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove job ${id.slice(0, 8)} from this list`);
  remove.addEventListener("click", () => {
    forget(id);
    renderRecent();
    $("recent-title").setAttribute("tabindex", "-1");
    $("recent-title").focus();
  });
  actions.append(" ", remove);
  li.append(head, meta, actions);
  return li;
}

// ---------------------------------------------------------------------------------------------
// Start.

function start() {
  $("song-form").addEventListener("submit", onSubmit);
  $("spread").addEventListener("click", onSpread);
  $("cancel").addEventListener("click", onCancel);
  $("style-kind-prompt").addEventListener("change", () => chooseStyle("prompt"));
  $("style-kind-upload").addEventListener("change", () => chooseStyle("upload"));
  chooseStyle(styleKind());
  const key = $("api-key");
  key.value = load(KEY_STORE, "");
  key.addEventListener("change", () => {
    save(KEY_STORE, key.value.trim());
    renderRecent();
  });
  $("recent-refresh").addEventListener("click", renderRecent);
  $("recent-clear").addEventListener("click", () => {
    save(RECENT_STORE, null);
    renderRecent();
  });
  // Clearing an error once the field is edited.
  for (const input of document.querySelectorAll("#song-form input, #song-form textarea, #song-form select")) {
    input.addEventListener("input", () => {
      const box = $(`${input.id}-error`);
      if (box && !box.hidden) {
        box.hidden = true;
        input.removeAttribute("aria-invalid");
      }
    });
  }
  renderRecent();
  const last = load(CURRENT_STORE, null);
  if (typeof last === "string" && recentIds().includes(last)) follow(last);
}

start();
