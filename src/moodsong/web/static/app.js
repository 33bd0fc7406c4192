// moodsong page: send a feeling (words, voice or the mood pad), poll the job, show the plan and the piece.
// Plain browser JavaScript, no libraries, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("compose-form");
const state = { valence: 0.5, arousal: 0.5, recording: null, voiceBlob: null, busy: false };
const MAX_PRIMER_BYTES = 256 * 1024;

// -- source tabs ------------------------------------------------------------------------

function source() {
  return form.querySelector("input[name=source]:checked").value;
}
function showPanel() {
  for (const name of ["words", "voice", "pad"]) $("panel-" + name).hidden = name !== source();
}
form.querySelectorAll("input[name=source]").forEach((el) => el.addEventListener("change", showPanel));
$("prompt").addEventListener("input", () => { $("prompt-count").textContent = $("prompt").value.length; });

// -- valence/arousal pad ----------------------------------------------------------------

function setPad(v, a) {
  state.valence = Math.max(-1, Math.min(1, v));
  state.arousal = Math.max(-1, Math.min(1, a));
  const dot = $("pad-dot");
  dot.style.left = ((state.valence + 1) * 50).toFixed(1) + "%";
  dot.style.top = ((1 - state.arousal) * 50).toFixed(1) + "%";
  const fmt = (x) => (x >= 0 ? "+" : "") + x.toFixed(2);
  const text = `valence ${fmt(state.valence)}, arousal ${fmt(state.arousal)}`;
  $("pad-readout").textContent = text;
  $("pad").setAttribute("aria-valuetext", text);
}
function padFromPointer(ev) {
  const r = $("pad").getBoundingClientRect();
  setPad(((ev.clientX - r.left) / r.width) * 2 - 1, 1 - ((ev.clientY - r.top) / r.height) * 2);
}
$("pad").addEventListener("pointerdown", (ev) => {
  $("pad").setPointerCapture(ev.pointerId);
  padFromPointer(ev);
});
$("pad").addEventListener("pointermove", (ev) => { if (ev.buttons) padFromPointer(ev); });
$("pad").addEventListener("keydown", (ev) => {
  const step = 0.1;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
  if (moves[ev.key]) {
    ev.preventDefault();
    setPad(state.valence + moves[ev.key][0], state.arousal + moves[ev.key][1]);
  }
});
setPad(0.5, 0.5);

// -- recording: microphone -> 16 kHz mono 16-bit WAV -----------------------------------

const VOICE_RATE = 16000;
const MAX_SECONDS = 30;

function encodeWav(samples, rate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const str = (off, s) => { for (let i = 0; i < s.length; i++) v.setUint8(off + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE");
  str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([buf], { type: "audio/wav" });
}

function resample(chunks, fromRate, toRate) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const input = new Float32Array(total);
  let off = 0;
  for (const c of chunks) { input.set(c, off); off += c.length; }
  const ratio = fromRate / toRate;
  const out = new Float32Array(Math.floor(total / ratio));
  for (let i = 0; i < out.length; i++) {
    // Average the input samples that fall into this output sample (a crude low-pass, enough for speech).
    const start = Math.floor(i * ratio), end = Math.min(total, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = start; j < end; j++) sum += input[j];
    out[i] = end > start ? sum / (end - start) : input[start] || 0;
  }
  return out;
}

async function startRecording() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  const ctx = new (window.AudioContext || window.webkitAudioContext)();
  const src = ctx.createMediaStreamSource(stream);
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  node.onaudioprocess = (ev) => {
    chunks.push(new Float32Array(ev.inputBuffer.getChannelData(0)));
    const seconds = (chunks.length * 4096) / ctx.sampleRate;
    $("rec-status").textContent = `Recording… ${seconds.toFixed(0)} s (press again to stop)`;
    if (seconds >= MAX_SECONDS) stopRecording();
  };
  src.connect(node);
  node.connect(ctx.destination);
  state.recording = { stream, ctx, node, chunks };
  $("record").setAttribute("aria-pressed", "true");
  $("record").textContent = "■ Stop";
}

function stopRecording() {
  const rec = state.recording;
  if (!rec) return;
  state.recording = null;
  rec.node.disconnect();
  rec.stream.getTracks().forEach((t) => t.stop());
  const rate = rec.ctx.sampleRate;
  rec.ctx.close();
  state.voiceBlob = encodeWav(resample(rec.chunks, rate, VOICE_RATE), VOICE_RATE);
  $("voice-file").value = "";
  const preview = $("rec-preview");
  preview.src = URL.createObjectURL(state.voiceBlob);
  preview.hidden = false;
  $("record").setAttribute("aria-pressed", "false");
  $("record").textContent = "● Record again";
  $("rec-status").textContent = "Recorded. Press Compose.";
}

if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  $("record").addEventListener("click", async () => {
    if (state.recording) return stopRecording();
    try {
      await startRecording();
    } catch (err) {
      $("rec-status").textContent = "No microphone: " + (err && err.message ? err.message : err);
    }
  });
} else {
  // Browsers only open the microphone on https:// or localhost pages.
  $("record").disabled = true;
  $("rec-status").textContent = "Recording needs https or localhost here; choose a recording instead.";
}
$("voice-file").addEventListener("change", () => {
  const f = $("voice-file").files[0];
  if (f) { state.voiceBlob = f; $("rec-preview").hidden = true; $("rec-status").textContent = f.name; }
});

// -- a MIDI file to continue -------------------------------------------------------------

function primerFile() {
  return $("primer").files[0] || null;
}
$("primer").addEventListener("change", () => { $("primer-clear").hidden = !primerFile(); });
$("primer-clear").addEventListener("click", () => {
  $("primer").value = "";
  $("primer-clear").hidden = true;
  $("primer").focus();
});

// -- compose, poll, show ------------------------------------------------------------------

function numberField(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

function settings() {
  const s = { bars: numberField("bars") ?? 16, candidates: numberField("candidates") ?? 4 };
  for (const [key, id] of [["tempo", "tempo"], ["seed", "seed"]]) {
    const v = numberField(id);
    if (v !== null) s[key] = v;
  }
  if ($("key").value) s.key = $("key").value;
  const formText = $("form").value.trim();
  if (formText) s.form = formText;
  // The API takes "MELODY[,ACCOMPANIMENT]" as General MIDI names.
  const melody = $("melody").value, accompaniment = $("accompaniment").value;
  if (accompaniment && !melody) throw new Error("Choose a melody instrument too, or set the accompaniment to automatic.");
  if (melody) s.instrument = accompaniment ? `${melody},${accompaniment}` : melody;
  return s;
}

function formData(fields) {
  const body = new FormData();
  for (const [k, v] of Object.entries(fields)) body.append(k, String(v));
  return body;
}

function request() {
  const s = settings();
  const kind = source();
  const primer = primerFile();
  if (primer && primer.size > MAX_PRIMER_BYTES) throw new Error("The MIDI file is too large (at most 256 KiB).");
  if (kind === "voice") {
    if (!state.voiceBlob) throw new Error("Record your request or choose a recording first.");
    const body = formData(s);
    body.append("voice", state.voiceBlob, "request.wav");
    if (primer) body.append("primer", primer, "primer.mid");
    return fetch("/api/compose/voice", { method: "POST", body });
  }
  const body = kind === "pad" ? { ...s, valence: state.valence, arousal: state.arousal } : { ...s, prompt: $("prompt").value.trim() };
  if (kind === "words" && !body.prompt) throw new Error("Type a feeling first, e.g. “a calm evening by the sea”.");
  if (primer) {  // a file needs a multipart form; the fields are those of the JSON body
    const form = formData(body);
    form.append("primer", primer, "primer.mid");
    return fetch("/api/compose/primer", { method: "POST", body: form });
  }
  return fetch("/api/compose", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

async function detailOf(resp) {
  try {
    const data = await resp.json();
    return data.detail || resp.statusText;
  } catch (_) {
    return `${resp.status} ${resp.statusText}`;
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setProgress(fraction, text) {
  const bar = $("progress-bar");
  if (fraction === null) bar.removeAttribute("value");  // indeterminate while waiting in line
  else bar.value = Math.round(fraction * 100);
  $("progress-text").textContent = text;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function poll(url) {
  for (;;) {
    const resp = await fetch(url, { cache: "no-store" });
    if (resp.status === 429) { await sleep(2000); continue; }
    if (!resp.ok) throw new Error(await detailOf(resp));
    const job = await resp.json();
    if (job.status === "done") return job;
    if (job.status === "failed") throw new Error(job.error || "Composing failed.");
    if (job.status === "queued") {
      setProgress(null, job.position ? `Waiting in line (${job.position} ahead)…` : "Starting…");
    } else {
      const f = Math.min(0.95, job.elapsed_s / Math.max(job.estimate_s, 1));
      setProgress(f, `Composing… ${Math.round(job.elapsed_s)} s of about ${Math.round(job.estimate_s)} s`);
    }
    await sleep(600);
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The plan, bar by bar, grouped by its sections (a primer's bars first): shown above the audio.
function showPlan(r) {
  const plan = r.plan;
  $("plan").hidden = !plan;
  $("chords-label").hidden = $("chords").hidden = !!plan;  // the grid shows them
  if (!plan) return;
  const summary = $("plan-summary");
  summary.replaceChildren(
    ...[plan.key, `${Number(plan.tempo_qpm.toFixed(1))} qpm`, `form ${plan.form}`, `${plan.bars} bars`].map((t) => el("span", "chip", t)));
  const names = r.instruments || {};
  const part = (p) => (names[p] && names[p].name) || `program ${plan.instruments[p]}`;
  $("plan-instruments").textContent = `Melody: ${part("melody")} · accompaniment: ${part("accompaniment")}`;

  const differ = new Map(((r.plan_followed || {}).differ || []).map((d) => [d.bar, d.heard]));
  const groups = [];
  const firstSection = plan.sections.length ? plan.sections[0].start_bar : plan.bar_chords.length + 1;
  if (firstSection > 1) groups.push({ name: "primer", label: "your MIDI", start: 1, bars: firstSection - 1 });
  for (const s of plan.sections) groups.push({ name: s.section, label: `section ${s.section}`, start: s.start_bar, bars: s.bars });
  const grid = $("plan-grid");
  grid.replaceChildren();
  for (const g of groups) {
    const row = el("div", "plan-row" + (g.name === "primer" ? " primer" : ""));
    const last = g.start + g.bars - 1;
    row.append(el("div", "plan-letter", g.name === "primer" ? "MIDI" : g.name));
    const list = el("ol", "plan-bars");
    list.setAttribute("aria-label", `${g.label}, bars ${g.start}–${last}`);
    for (let bar = g.start; bar <= last; bar++) {
      const cell = el("li", "plan-bar");
      cell.append(el("span", "bar-no", String(bar)), el("span", "bar-chord", plan.bar_chords[bar - 1] || "–"));
      if (differ.has(bar)) {
        cell.classList.add("differs");
        cell.title = `heard as ${differ.get(bar)}`;
        cell.append(el("span", "visually-hidden", ` (heard as ${differ.get(bar)})`));
      }
      list.append(cell);
    }
    row.append(list);
    grid.append(row);
  }
  const f = r.plan_followed;
  $("plan-followed").textContent = f
    ? `The accompaniment is heard as the plan in ${f.agree} of ${f.bars} bars` +
      (f.differ && f.differ.length ? " (dashed: heard otherwise)." : ".")
    : "";
}

function showResult(job) {
  const r = job.result;
  $("result-title").textContent = r.target && r.target.label ? `Your piece: ${r.target.label}` : "Your piece";
  const t = r.target || {};
  const heard = r.transcript ? `Heard “${r.transcript}”. ` : "";
  const fmt = (x) => (x >= 0 ? "+" : "") + Number(x).toFixed(2);
  const a = r.analysis || {};
  const words = (a.keywords || []).map((k) => (k.negated ? "not " : "") + k.word);
  const from = words.length ? ` from the words: ${words.join(", ")}` : "";
  const note = a.message ? ` (${a.message})` : "";
  $("explanation").textContent =
    `${heard}Understood: ${t.label} (valence ${fmt(t.valence)}, arousal ${fmt(t.arousal)}, quadrant ${t.quadrant})${from}.${note}`;
  showPlan(r);
  $("player").src = r.files.audio;
  $("roll").src = r.files.png;
  $("chords").textContent = (r.chords || []).join(" | ") || "–";
  $("key-out").textContent = r.key || "–";
  $("tempo-out").textContent = `${r.tempo_qpm} quarter notes per minute`;
  $("duration").textContent = `${r.duration_s.toFixed(1)} s`;
  $("midi-link").href = r.files.midi;
  $("audio-link").href = r.files.audio;
  $("leadsheet-link").hidden = !r.files.musicxml;
  if (r.files.musicxml) $("leadsheet-link").href = r.files.musicxml;
  $("details").textContent = r.explanation || "";
  $("result").hidden = false;
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (state.busy) return;
  if (state.recording) stopRecording();
  showError("");
  state.busy = true;
  $("compose").disabled = true;
  $("progress").hidden = false;
  setProgress(null, "Sending…");
  try {
    const resp = await request();
    if (!resp.ok) throw new Error(await detailOf(resp));
    const accepted = await resp.json();
    const job = await poll(accepted.status_url);
    setProgress(1, "Done.");
    showResult(job);
  } catch (err) {
    showError(err && err.message ? err.message : String(err));
  } finally {
    state.busy = false;
    $("compose").disabled = false;
    setTimeout(() => { if (!state.busy) $("progress").hidden = true; }, 800);
  }
});
