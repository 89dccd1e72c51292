// The search page: POST /search, and GET /ids/{id}/videos when a semantic ID is clicked.
// Data from the index is only ever set as text (never as HTML): a title cannot inject markup.
"use strict";

const BROWSE_SIZE = 50; // videos listed per ID: a screenful; the total says how many hold it
const KEY_STORE = "grdr-api-key"; // sessionStorage: the key lives as long as the tab

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

async function call(path, init = {}) {
  const headers = { ...(init.headers || {}) };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers["X-API-Key"] = key;
  const response = await fetch(path, { ...init, headers });
  const body = await response.json();
  if (response.ok) return body;
  $("key").hidden = response.status !== 401;
  throw new Error(body.error || `HTTP ${response.status}`);
}

function showError(error) {
  $("error").textContent = error ? error.message : "";
  $("error").hidden = !error;
}

function filters() {
  const out = {};
  const tags = $("tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.length) out.tags = tags;
  if ($("dmin").value !== "") out.duration_min = Number($("dmin").value);
  if ($("dmax").value !== "") out.duration_max = Number($("dmax").value);
  return Object.keys(out).length ? out : null;
}

function sidButton(sid, current) {
  const button = el("button", { type: "button", class: sid === current ? "sid current" : "sid", "data-sid": sid }, sid);
  button.addEventListener("click", () => browse(sid));
  return button;
}

function ms(value) {
  return `${value.toFixed(1)} ms`;
}

function videos(n) {
  return `${n.toLocaleString()} ${n === 1 ? "video" : "videos"}`;
}

async function search(event) {
  event.preventDefault();
  const body = { text: $("q").value, k: Number($("k").value), hybrid: $("hybrid").value, filters: filters() };
  showError(null);
  let result;
  try {
    result = await call("/search", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (error) {
    showError(error);
    return;
  }
  $("score-head").textContent = body.hybrid === "rrf" ? "RRF score" : "dense score";
  const rows = result.hits.map((hit, i) => el("tr", { "data-video-id": hit.video_id },
    el("td", { class: "num" }, String(i + 1)),
    el("td", {}, el("span", { class: "title" }, hit.title || "(no title)"), el("span", { class: "vid" }, hit.video_id)),
    el("td", { class: "num score" }, hit.score.toFixed(4)),
    el("td", {}, hit.matched_id ? sidButton(hit.matched_id) : el("span", { class: "none" }, "BM25 only")),
  ));
  $("results").querySelector("tbody").replaceChildren(...rows);
  $("results").hidden = false;
  $("summary").textContent = `${result.hits.length} hits · ${result.recalled_ids} semantic IDs recalled · `
    + `${result.pool_size} videos reranked`;
  const t = result.timings_ms;
  $("timings").textContent = ["encode", "decode", "opensearch", "total"]
    .filter((stage) => stage in t).map((stage) => `${stage} ${ms(t[stage])}`).join(" · ");
}

async function browse(sid) {
  showError(null);
  let shared;
  try {
    shared = await call(`/ids/${encodeURIComponent(sid)}/videos?size=${BROWSE_SIZE}`);
  } catch (error) {
    showError(error);
    return;
  }
  $("browser-title").textContent = `ID ${shared.semantic_id} · ${videos(shared.total)}`;
  const items = shared.videos.map((video) => el("li", { "data-video-id": video.video_id },
    el("span", { class: "title" }, video.title || "(no title)"),
    el("span", { class: "vid" }, video.video_id),
    el("div", { class: "ids" }, ...video.semantic_ids.map((other) => sidButton(other, shared.semantic_id))),
  ));
  $("browser-list").replaceChildren(...items);
  $("browser").hidden = false;
}

async function status() {
  try {
    const health = await call("/health");
    $("status").textContent = `index ${health.index} · ${health.ids.toLocaleString()} semantic IDs · `
      + `model ${health.fingerprint.slice(0, 12)}`;
  } catch (error) {
    $("status").textContent = `not ready: ${error.message}`;
  }
}

$("search").addEventListener("submit", search);
$("key-use").addEventListener("click", () => {
  sessionStorage.setItem(KEY_STORE, $("key-value").value);
  $("key").hidden = true;
  showError(null);
});
status();
