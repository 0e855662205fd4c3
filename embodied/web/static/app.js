// The live page: renders the session's pushed state and sends commands over one WebSocket.
// Every text from the server goes in through textContent, never as HTML.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path;
const $ = (id) => document.getElementById(id);
const FRAME_INTERVAL_MS = 200;  // the server encodes at most ~5 frames a second per camera anyway

let socket = null;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(withToken(`${scheme}://${location.host}/ws`));
  socket.onopen = () => setLink(true);
  socket.onclose = () => { setLink(false); setTimeout(connect, 1000); };
  socket.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "state") render(msg);
    else if (msg.type === "error") showError(msg.error);
    else if (msg.type === "ack") showError("");
  };
}

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    showError("not connected to the robot; retrying…");
    return false;
  }
  socket.send(JSON.stringify(message));
  return true;
}

function setLink(up) {
  $("link").textContent = up ? "connected" : "disconnected";
  $("link").classList.toggle("off", !up);
}

function showError(text) { $("error").textContent = text || ""; }

function render(s) {
  $("state").textContent = s.state;
  $("state").className = `badge state-${s.state}`;
  $("instruction").textContent = s.instruction || "–";
  $("subtask").textContent = s.subtask || "–";
  $("motion").textContent = s.language_motion || "–";
  $("episode").textContent = s.episode || "–";
  $("step").textContent = s.step;
  $("time").textContent = `${Number(s.time).toFixed(1)} s`;
  $("success").textContent = s.success ? "yes" : "no";
  $("safety").textContent = s.safety_total;
  if (s.estop_error) showError(`e-stop hook failed: ${s.estop_error}`);
  renderIfChanged("history", s.corrections, renderHistory);
  renderIfChanged("results", s.results, renderResults);
  for (const [camera, seq] of Object.entries(s.cameras)) updateCamera(camera, seq);
}

// Lists are rebuilt only when their content changes, not on every pushed tick (keeps selections and focus).
const rendered = {};

function renderIfChanged(key, items, render) {
  const json = JSON.stringify(items);
  if (rendered[key] === json) return;
  rendered[key] = json;
  render(items);
}

function renderHistory(corrections) {
  const list = $("history");
  list.replaceChildren(...corrections.map((c) => {
    const li = document.createElement("li");
    li.dataset.status = c.status;
    li.dataset.received = String(c.received);
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `ep ${c.episode} · ${Number(c.time).toFixed(1)} s · ${c.source}`;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = c.text;
    const fate = document.createElement("span");
    const label = c.received ? "received by the policy" : c.status === "delivered" ? "delivered (policy does not listen)" : c.status;
    fate.className = `fate fate-${c.received ? "received" : c.status}`;
    fate.textContent = c.step === null ? label : `${label} at step ${c.step}`;
    li.append(meta, text, fate);
    return li;
  }));
}

function renderResults(results) {
  $("results").replaceChildren(...results.map((r) => {
    const li = document.createElement("li");
    li.textContent = `${r.instruction} — ${r.success ? "success" : r.stopped ? "stopped" : "failed"} ` +
      `after ${r.steps} steps, ${r.corrections} corrections`;
    return li;
  }));
}

// One <img> per camera; a new frame is fetched only after the previous one loaded, at most every FRAME_INTERVAL_MS.
const cameras = {};

function updateCamera(name, seq) {
  let cam = cameras[name];
  if (!cam) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.id = `camera-${name}`;
    img.alt = `camera ${name}`;
    const caption = document.createElement("figcaption");
    caption.textContent = name;
    figure.append(img, caption);
    $("cameras").append(figure);
    cam = cameras[name] = { img, wanted: 0, shown: 0, busy: false, last: 0 };
    img.onload = img.onerror = () => { cam.busy = false; cam.last = performance.now(); schedule(name); };
  }
  cam.wanted = Math.max(cam.wanted, seq);
  schedule(name);
}

function schedule(name) {
  const cam = cameras[name];
  if (cam.busy || cam.wanted <= cam.shown) return;
  const wait = cam.last + FRAME_INTERVAL_MS - performance.now();
  if (wait > 0) { setTimeout(() => schedule(name), wait); return; }
  cam.busy = true;
  cam.shown = cam.wanted;
  cam.img.src = withToken(`api/frames/${encodeURIComponent(name)}.jpg?seq=${cam.wanted}`);
}

for (const command of ["pause", "resume", "stop", "estop"]) {
  $(command).addEventListener("click", () => send({ type: command }));
}

$("correction-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const box = $("correction-text");
  const text = box.value.trim();
  if (!text) { showError("type a correction first, e.g. 'a bit more to the left'"); return; }
  if (send({ type: "correction", text })) box.value = "";
});

connect();
