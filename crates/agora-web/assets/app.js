// Agora's pages: live updates, streaming, and checks that run in the page. Plain JavaScript, no build.
"use strict";

// ---- BLAKE3 (the chain's hash), for checking Merkle proofs in the page --------------------------
const B3_IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);
const B3_PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1, CHUNK_END = 2, PARENT = 4, ROOT = 8;

function rotr(x, n) { return (x >>> n) | (x << (32 - n)); }

// One compression: the chaining value `cv` (8 words) over a 16-word block; returns 8 words.
function b3Compress(cv, m, counter, blockLen, flags) {
  const s = new Uint32Array(16);
  s.set(cv, 0);
  s.set(B3_IV.subarray(0, 4), 8);
  s[12] = counter >>> 0;
  s[13] = Math.floor(counter / 0x100000000) >>> 0;
  s[14] = blockLen;
  s[15] = flags;
  let w = Uint32Array.from(m);
  const g = (a, b, c, d, x, y) => {
    s[a] = s[a] + s[b] + x; s[d] = rotr(s[d] ^ s[a], 16);
    s[c] = s[c] + s[d]; s[b] = rotr(s[b] ^ s[c], 12);
    s[a] = s[a] + s[b] + y; s[d] = rotr(s[d] ^ s[a], 8);
    s[c] = s[c] + s[d]; s[b] = rotr(s[b] ^ s[c], 7);
  };
  for (let r = 0; r < 7; r++) {
    g(0, 4, 8, 12, w[0], w[1]); g(1, 5, 9, 13, w[2], w[3]);
    g(2, 6, 10, 14, w[4], w[5]); g(3, 7, 11, 15, w[6], w[7]);
    g(0, 5, 10, 15, w[8], w[9]); g(1, 6, 11, 12, w[10], w[11]);
    g(2, 7, 8, 13, w[12], w[13]); g(3, 4, 9, 14, w[14], w[15]);
    if (r < 6) w = Uint32Array.from(B3_PERM, (i) => w[i]);
  }
  const out = new Uint32Array(8);
  for (let i = 0; i < 8; i++) out[i] = s[i] ^ s[i + 8];
  return out;
}

function b3Words(bytes, at, len) {
  const m = new Uint32Array(16);
  for (let i = 0; i < len; i++) m[i >> 2] |= bytes[at + i] << (8 * (i & 3));
  return m;
}

// The chaining value of chunk `index` (bytes[at..at+len], len ≤ 1024); `root` when it is the only one.
function b3Chunk(bytes, at, len, index, root) {
  let cv = B3_IV;
  const blocks = Math.max(1, Math.ceil(len / 64));
  for (let b = 0; b < blocks; b++) {
    const n = Math.min(64, len - 64 * b);
    let flags = (b === 0 ? CHUNK_START : 0) | (b === blocks - 1 ? CHUNK_END : 0);
    if (root && b === blocks - 1) flags |= ROOT;
    cv = b3Compress(cv, b3Words(bytes, at + 64 * b, n), index, n, flags);
  }
  return cv;
}

// Chunks [lo, hi) of the input: the left subtree holds the largest power of two below their number.
function b3Tree(bytes, lo, hi, root) {
  const n = hi - lo;
  if (n === 1) {
    const at = lo * 1024;
    return b3Chunk(bytes, at, Math.min(1024, bytes.length - at), lo, root);
  }
  let left = 1;
  while (left * 2 < n) left *= 2;
  const m = new Uint32Array(16);
  m.set(b3Tree(bytes, lo, lo + left, false), 0);
  m.set(b3Tree(bytes, lo + left, hi, false), 8);
  return b3Compress(B3_IV, m, 0, 64, PARENT | (root ? ROOT : 0));
}

function blake3(bytes) {
  const chunks = Math.max(1, Math.ceil(bytes.length / 1024));
  const words = b3Tree(bytes, 0, chunks, true);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = (words[i >> 2] >>> (8 * (i & 3))) & 0xff;
  return out;
}

function fromHex(s) {
  s = s.replace(/^0x/, "");
  if (s.length % 2 !== 0 || /[^0-9a-fA-F]/.test(s)) throw new Error("not hex: " + s.slice(0, 16));
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}
function toHex(b) { return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(""); }
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
// For tests: BLAKE3 of hex input, as hex.
window.agoraBlake3Hex = (hex) => toHex(blake3(fromHex(hex)));

// The state tree's proof (agora_types::proof), as the API gives it (`GET /v1/accounts/{a}?prove=true`):
// leaf = H(0 ‖ key_hash ‖ value_hash), node = H(1 ‖ left ‖ right), siblings from the root down,
// bit d of the key hash picks the side.
function verifyProof(p) {
  const keyHash = blake3(fromHex(p.key));
  if (!Array.isArray(p.siblings)) throw new Error("no siblings in the proof");
  const siblings = p.siblings.map(fromHex);
  if (siblings.length > 256) return false;
  if (!p.leaf) return false; // an account page proves a present value
  const [leafKey, leafValue] = p.leaf.map(fromHex);
  if (toHex(leafKey) !== toHex(keyHash) || toHex(leafValue) !== toHex(blake3(fromHex(p.value)))) {
    return false;
  }
  let h = blake3(concat([0], leafKey, leafValue));
  for (let d = siblings.length - 1; d >= 0; d--) {
    const bit = (keyHash[d >> 3] >> (7 - (d & 7))) & 1;
    h = blake3(bit ? concat([1], siblings[d], h) : concat([1], h, siblings[d]));
  }
  return toHex(h) === p.state_root.replace(/^0x/, "");
}
window.agoraVerifyProof = verifyProof;

// ---- Page behaviours, attached by data attributes ------------------------------------------------
function setStatus(el, ok, text) {
  el.textContent = text;
  el.classList.remove("ok", "bad");
  el.classList.add(ok ? "ok" : "bad");
}

function initProof(root) {
  const button = root.querySelector("[data-proof-verify]");
  const field = root.querySelector("[data-proof-json]");
  const out = root.querySelector("[data-proof-result]");
  if (!button || !field || !out) return;
  button.addEventListener("click", () => {
    try {
      const ok = verifyProof(JSON.parse(field.value));
      setStatus(out, ok, ok
        ? "Valid: this account's state hashes up to the block's state root."
        : "Invalid: the proof does not lead to the state root.");
    } catch (e) {
      setStatus(out, false, "Invalid: " + e.message);
    }
  });
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

// The explorer's live table: each block event from the node becomes a row, in height order. A
// block committed between the page's render and the stream's start (or skipped by a stream that
// fell behind) is fetched from the API, so the table never has a gap.
function initLiveBlocks(table) {
  const body = table.querySelector("tbody");
  const status = document.querySelector("[data-live-status]");
  const keep = Number(table.dataset.keep || 20);
  const top = () => (body.rows.length ? Number(body.rows[0].dataset.height) : null);

  // The block's transactions into the live transactions table, newest first.
  const txTable = document.querySelector("table[data-live-txs] tbody");
  async function addTxs(height) {
    if (!txTable) return;
    try {
      const r = await fetch(`/explorer/blocks/${height}/txs`);
      if (!r.ok) return;
      const rows = await r.json();
      for (const t of rows.reverse()) {
        if (txTable.querySelector(`tr[data-hash="${t.hash}"]`)) continue;
        const row = el("tr", { "data-hash": t.hash, "data-height": String(height), class: "fresh" },
          el("td", { class: "mono" }, el("a", { href: `/txs/${t.hash}` }, t.hash.slice(0, 16) + "…")),
          el("td", {}, el("a", { href: `/blocks/${height}` }, String(height))),
          el("td", {}, t.kind),
          el("td", { class: "mono" }, el("a", { href: `/accounts/${t.sender}` }, t.sender.slice(0, 16) + "…")),
          el("td", {}, el("span", { class: t.success ? "ok" : "bad" }, t.success ? "ok" : "failed")));
        const after = Array.from(txTable.rows).find((x) => Number(x.dataset.height || 0) < height);
        txTable.insertBefore(row, after || null);
      }
      const keep = Number(txTable.closest("table").dataset.keep || 10);
      while (txTable.rows.length > keep) txTable.deleteRow(txTable.rows.length - 1);
    } catch (_) { /* the next block tries again */ }
  }

  function insert(b) {
    if (body.querySelector(`tr[data-height="${b.height}"]`)) return;
    if (b.txs > 0) addTxs(b.height);
    const time = new Date(b.time_ms).toISOString().replace("T", " ").slice(0, 19);
    const row = el("tr", { "data-height": String(b.height), class: "fresh" },
      el("td", {}, el("a", { href: `/blocks/${b.height}` }, String(b.height))),
      el("td", { class: "mono" }, el("a", { href: `/blocks/${b.hash}` }, b.hash.slice(0, 16) + "…")),
      el("td", {}, String(b.txs)),
      el("td", {}, time));
    const after = Array.from(body.rows).find((r) => Number(r.dataset.height) < b.height);
    body.insertBefore(row, after || null);
    while (body.rows.length > keep) body.deleteRow(body.rows.length - 1);
    document.querySelectorAll("[data-latest-height]").forEach((h) => {
      if (Number(h.textContent) < b.height) h.textContent = String(b.height);
    });
  }

  async function fill(from, to) {
    for (let h = Math.max(from, to - keep + 1); h <= to; h++) {
      try {
        const r = await fetch(`/v1/blocks/${h}`);
        if (!r.ok) continue;
        const b = await r.json();
        insert({ height: b.header.height, hash: b.hash, txs: b.txs.length, time_ms: b.header.time_ms });
      } catch (_) { /* the next event tries again */ }
    }
  }

  const source = new EventSource("/v1/events/blocks");
  source.addEventListener("open", () => status && setStatus(status, true, "live"));
  source.addEventListener("error", () => status && setStatus(status, false, "reconnecting…"));
  source.addEventListener("block", (ev) => {
    const b = JSON.parse(ev.data);
    const t = top();
    if (t !== null && b.height > t + 1) fill(t + 1, b.height - 1);
    insert(b);
  });
}

// ---- Playground: the gateway from the browser --------------------------------------------------
function gateway() {
  const url = document.querySelector("[data-gateway-url]").value.trim().replace(/\/+$/, "");
  const key = document.querySelector("[data-gateway-key]").value.trim();
  if (!url) throw new Error("Give the gateway's URL.");
  if (!key) throw new Error("Give your API key.");
  sessionStorage.setItem("agora-gateway-url", url);
  sessionStorage.setItem("agora-gateway-key", key);
  return { url, key };
}

// POSTs `body` as JSON to the gateway's `path` with the user's key.
function postGateway(gw, path, body) {
  return fetch(`${gw.url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${gw.key}` },
    body: JSON.stringify(body),
  });
}

function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

// An OpenAI-style error body as one sentence, whatever the gateway sent.
async function errorOf(response) {
  const text = await response.text();
  try {
    const e = JSON.parse(text).error;
    if (e && e.message) return `${e.message} (${e.code || response.status})`;
  } catch (_) { /* not JSON */ }
  return `The gateway answered ${response.status}: ${text.slice(0, 200)}`;
}

function formatAgr(units) {
  const n = BigInt(units);
  const whole = n / 1000000000n;
  const frac = (n % 1000000000n).toString().padStart(9, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac} AGR` : `${whole} AGR`;
}

function verificationOf(value) {
  return value === "redundant" ? { redundant: 1 } : value;
}

// The job's settlement and verification, from the node, until they are final.
function followJob(root, jobId) {
  const state = root.querySelector("[data-job-state]");
  const verification = root.querySelector("[data-job-verification]");
  let tries = 0;
  const tick = async () => {
    tries += 1;
    try {
      const r = await fetch(`/v1/market/jobs/${jobId}`);
      if (r.ok) {
        const j = await r.json();
        state.textContent = `settled at block ${j.job.settled_height}; fee ${j.state}`;
        const level = j.job.level;
        let text = `${typeof level === "string" ? level : JSON.stringify(level)}: `;
        if (j.sampled === null) text += "the draw is in the next block";
        else if (!j.sampled && !j.check) text += "not drawn for a check";
        else if (j.check) text += `checked — ${j.check.outcome}` +
          (j.check.seats.length ? ` (${j.check.seats.map((s) => s.verdict ? JSON.stringify(s.verdict) : "waiting").join(", ")})` : "");
        else text += "drawn for a check";
        verification.textContent = text;
        const final = j.state === "released" || j.state === "refunded";
        if (final) return;
      }
    } catch (_) { /* the next tick tries again */ }
    if (tries < 600) setTimeout(tick, 1000);
  };
  tick();
}

function initChat(root) {
  const form = root.querySelector("[data-chat-form]");
  const out = root.querySelector("[data-chat-output]");
  const errorBox = root.querySelector("[data-chat-error]");
  const receipt = root.querySelector("[data-chat-receipt]");
  const send = root.querySelector("[data-chat-send]");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(errorBox, "");
    out.textContent = "";
    receipt.hidden = true;
    const lpBox = root.querySelector("[data-chat-logprobs-out]");
    lpBox.hidden = true;
    let gw;
    try { gw = gateway(); } catch (e) { showError(errorBox, e.message); return; }
    send.disabled = true;
    try {
      const request = {
        model: root.querySelector("[data-chat-model]").value,
        messages: [{ role: "user", content: root.querySelector("[data-chat-prompt]").value }],
        max_tokens: Number(root.querySelector("[data-chat-max]").value),
        temperature: Number(root.querySelector("[data-chat-temperature]").value),
        verification: verificationOf(root.querySelector("[data-chat-verification]").value),
      };
      const stop = root.querySelector("[data-chat-stop]").value;
      if (stop) request.stop = [stop];
      const withLogprobs = root.querySelector("[data-chat-logprobs]").checked;
      if (withLogprobs) { request.logprobs = true; request.top_logprobs = 3; }
      const schemaText = root.querySelector("[data-chat-schema]").value.trim();
      if (schemaText) {
        let schema;
        try { schema = JSON.parse(schemaText); } catch (e) { throw new Error(`The JSON schema does not parse: ${e.message}`); }
        request.response_format = { type: "json_schema", json_schema: { name: "answer", schema } };
      }
      let logprobs = null;
      const done = await streamChat(gw, request, out, (lp) => { logprobs = lp; });
      if (withLogprobs && logprobs) renderLogprobs(lpBox, logprobs);
      if (!done) { showError(errorBox, "The answer ended without its receipt."); return; }
      const job = receipt.querySelector("[data-receipt-job]");
      job.textContent = done.job_id;
      job.href = `/market/jobs/${done.job_id}`;
      receipt.querySelector("[data-receipt-fee]").textContent = formatAgr(done.fee);
      receipt.querySelector("[data-receipt-provider]").textContent = done.provider;
      receipt.querySelector("[data-receipt-tokens]").textContent =
        `${done.input_tokens} in, ${done.output_tokens} out`;
      receipt.hidden = false;
      followJob(receipt, done.job_id);
    } catch (e) {
      // The gateway's refusal (a wrong key, an unknown model), a stream that broke, or no answer.
      showError(errorBox, e instanceof TypeError ? `The gateway could not be reached: ${e.message}` : e.message);
    } finally {
      send.disabled = false;
    }
  });
}

function initEmbed(root) {
  const form = root.querySelector("[data-embed-form]");
  const errorBox = root.querySelector("[data-embed-error]");
  const table = root.querySelector("[data-embed-matrix]");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(errorBox, "");
    let gw;
    try { gw = gateway(); } catch (e) { showError(errorBox, e.message); return; }
    const texts = root.querySelector("[data-embed-texts]").value.split("\n").map((t) => t.trim()).filter(Boolean);
    if (texts.length < 2) { showError(errorBox, "Give at least two texts, one per line."); return; }
    try {
      const r = await postGateway(gw, "/v1/embeddings",
        { model: root.querySelector("[data-embed-model]").value, input: texts });
      if (!r.ok) { showError(errorBox, await errorOf(r)); return; }
      const body = await r.json();
      const v = body.data.map((d) => d.embedding);
      const norm = (a) => Math.sqrt(a.reduce((s, x) => s + x * x, 0));
      const cos = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0) / (norm(a) * norm(b));
      const head = table.querySelector("thead");
      const rows = table.querySelector("tbody");
      head.replaceChildren(el("tr", {}, el("th", { scope: "col" }, ""),
        ...texts.map((t, i) => el("th", { scope: "col", title: t }, `#${i + 1}`))));
      rows.replaceChildren(...texts.map((t, i) => el("tr", {},
        el("th", { scope: "row" }, `#${i + 1} ${t}`),
        ...texts.map((_, j) => {
          const c = cos(v[i], v[j]);
          const cell = el("td", { "data-sim": c.toFixed(3), style: `background: rgba(59,91,219,${Math.max(0, c) * 0.45})` }, c.toFixed(3));
          return cell;
        }))));
      table.hidden = false;
    } catch (e) {
      showError(errorBox, `The gateway could not be reached: ${e.message}`);
    }
  });
}

// ---- Audit: findings beside the source ------------------------------------------------------------
const SEVERITIES = ["high", "medium", "low", "info"];

function readFile(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve({ name: file.name, source: String(r.result) });
    r.onerror = () => reject(new Error(`cannot read ${file.name}`));
    r.readAsText(file);
  });
}

// Shows each token of the answer shaded by its probability, its likeliest alternatives in its title.
function renderLogprobs(box, logprobs) {
  const pct = (lp) => `${(Math.exp(lp) * 100).toFixed(1)} %`;
  const tokens = (logprobs.content || []).map((t) => {
    const alternatives = (t.top_logprobs || []).map((a) => `${JSON.stringify(a.token)} ${pct(a.logprob)}`).join(", ");
    return el("span", {
      class: "token", "data-logprob": String(t.logprob),
      title: `${pct(t.logprob)}; likeliest: ${alternatives}`,
      style: `background: rgba(59,91,219,${(Math.exp(t.logprob) * 0.45).toFixed(3)})`,
    }, t.token);
  });
  box.querySelector("[data-chat-tokens]").replaceChildren(...tokens);
  box.hidden = false;
}

// Streams the chat answer to `request` (an OpenAI chat request, sent with `stream: true`) into
// `out` as its tokens arrive; returns the receipt that ends it (and gives `onLogprobs` the
// answer's log-probabilities, when asked for, which come with it).
async function streamChat(gw, request, out, onLogprobs) {
  const r = await postGateway(gw, "/v1/chat/completions", { ...request, stream: true });
  if (!r.ok) throw new Error(await errorOf(r));
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", receipt = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:") || line.includes("[DONE]")) continue;
        const chunk = JSON.parse(line.slice(5));
        if (chunk.error) throw new Error(chunk.error.message);
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) out.textContent += delta.content;
        const lp = chunk.choices && chunk.choices[0] && chunk.choices[0].logprobs;
        if (lp && onLogprobs) onLogprobs(lp);
        if (chunk.agora) receipt = chunk.agora;
      }
    }
  }
  return receipt;
}

function renderAudit(root, files, report, chatModel) {
  const out = root.querySelector("[data-audit-files-out]");
  const sources = new Map(files.map((f) => [f.name, f.source.split("\n")]));
  const s = report.summary;
  root.querySelector("[data-audit-summary]").textContent =
    `${s.findings} findings: ${s.high} high, ${s.medium} medium, ${s.low} low, ${s.info} info` +
    (s.unparsed_files ? `; ${s.unparsed_files} file(s) did not parse` : "");
  const job = root.querySelector("[data-audit-job]");
  job.textContent = report.agora.job_id;
  job.href = `/market/jobs/${report.agora.job_id}`;
  const published = root.querySelector("[data-audit-published]");
  if (report.published) {
    const link = el("a", { href: `/search?q=${encodeURIComponent(report.published.id)}` }, report.published.id);
    published.replaceChildren(" · published as ", link, " once the job's verification is over");
  } else {
    published.replaceChildren();
  }
  const sarif = root.querySelector("[data-sarif-download]");
  sarif.href = URL.createObjectURL(new Blob([JSON.stringify(report.sarif, null, 2)], { type: "application/sarif+json" }));
  out.replaceChildren();
  for (const err of report.errors || []) {
    out.append(el("div", { class: "alert", role: "alert" }, `${err.file}, line ${err.line}: ${err.message} (not audited)`));
  }
  files.forEach((file, fi) => {
    const lines = sources.get(file.name) || [];
    const findings = report.findings.filter((f) => f.file === file.name);
    const worst = new Map();
    for (const f of findings) {
      for (let l = f.line; l <= Math.max(f.line, f.end_line); l++) {
        const prev = worst.get(l);
        if (!prev || SEVERITIES.indexOf(f.severity) < SEVERITIES.indexOf(prev)) worst.set(l, f.severity);
      }
    }
    const code = el("ol", { class: "source", "aria-label": `${file.name}, with flagged lines marked` });
    lines.forEach((text, i) => {
      const n = i + 1;
      const attrs = { id: `f${fi}-L${n}`, "data-line": String(n) };
      if (worst.has(n)) { attrs.class = `flag sev-${worst.get(n)}`; attrs["data-severity"] = worst.get(n); }
      code.append(el("li", attrs, text || " "));
    });
    const list = el("ul", { class: "findings" });
    for (const f of findings) {
      const explain = el("button", { type: "button", class: "small" }, "Explain");
      const explanation = el("div", { class: "explanation", "aria-live": "polite" });
      explain.addEventListener("click", async () => {
        explain.disabled = true;
        explanation.textContent = "";
        try {
          const gw = gateway();
          const snippet = lines.slice(Math.max(0, f.line - 3), f.end_line + 2).join("\n");
          const prompt = `A Solidity auditor reports "${f.message}" (${f.detector}, ${f.severity}) at lines ${f.line}-${f.end_line} of this code:\n${snippet}\nExplain the risk in two sentences and how to fix it.`;
          const receipt = await streamChat(gw, {
            model: chatModel, messages: [{ role: "user", content: prompt }], max_tokens: 96,
          }, explanation);
          if (receipt) explanation.append(el("small", { class: "muted" }, ` (generated by ${chatModel}; job `,
            el("a", { href: `/market/jobs/${receipt.job_id}` }, receipt.job_id.slice(0, 12) + "…"), ")"));
        } catch (e) {
          explanation.textContent = `No explanation: ${e.message}`;
          explanation.classList.add("bad");
        } finally {
          explain.disabled = false;
        }
      });
      list.append(el("li", { class: `finding sev-${f.severity}`, "data-severity": f.severity, "data-detector": f.detector },
        el("span", { class: `pill sev-${f.severity}` }, f.severity), " ",
        el("a", { href: `#f${fi}-L${f.line}` }, `line ${f.line}${f.end_line > f.line ? "–" + f.end_line : ""}`), " ",
        el("b", {}, f.detector), el("p", {}, f.message), el("p", { class: "muted" }, f.hint), explain, explanation));
    }
    if (!findings.length) list.append(el("li", { class: "muted" }, "No findings in this file."));
    out.append(el("section", { class: "audit-file" }, el("h3", { class: "mono" }, file.name),
      el("div", { class: "audit-grid" }, el("div", { class: "scroll" }, code), list)));
  });
  applyFilters(root);
  root.querySelector("[data-audit-result]").hidden = false;
}

function applyFilters(root) {
  const shown = new Set(Array.from(root.querySelectorAll("[data-severity-filter]:checked"), (c) => c.value));
  root.querySelectorAll(".finding[data-severity]").forEach((f) => { f.hidden = !shown.has(f.dataset.severity); });
  root.querySelectorAll(".source li[data-severity]").forEach((l) => {
    l.classList.toggle("flag", shown.has(l.dataset.severity));
  });
}

function initAudit(page) {
  const root = page.closest("main") || document;
  const form = page.querySelector("[data-audit-form]");
  const errorBox = page.querySelector("[data-audit-error]");
  const send = page.querySelector("[data-audit-send]");
  const chatModel = page.dataset.chatModel;
  root.querySelectorAll("[data-severity-filter]").forEach((c) => c.addEventListener("change", () => applyFilters(root)));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(errorBox, "");
    let gw;
    try { gw = gateway(); } catch (e) { showError(errorBox, e.message); return; }
    const files = await Promise.all(Array.from(page.querySelector("[data-audit-files]").files, readFile));
    const pasted = page.querySelector("[data-audit-source]").value;
    if (pasted.trim()) files.push({ name: "pasted.sol", source: pasted });
    if (!files.length) { showError(errorBox, "Upload .sol files or paste a contract."); return; }
    send.disabled = true;
    try {
      const r = await postGateway(gw, "/v1/audits",
        { files, format: "sarif", verification: page.querySelector("[data-audit-verification]").value,
          publish: page.querySelector("[data-audit-publish]").checked });
      if (!r.ok) { showError(errorBox, await errorOf(r)); return; }
      renderAudit(root, files, await r.json(), chatModel);
    } catch (e) {
      showError(errorBox, `The gateway could not be reached: ${e.message}`);
    } finally {
      send.disabled = false;
    }
  });
}

// ---- Devnet: transfers from the demo wallet ---------------------------------------------------------
function initDemoTransfer(root) {
  const form = root.querySelector("[data-demo-form]");
  const errorBox = root.querySelector("[data-demo-error]");
  const result = root.querySelector("[data-demo-result]");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError(errorBox, "");
    result.replaceChildren();
    try {
      const r = await fetch("/devnet/transfer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          to: root.querySelector("[data-demo-to]").value,
          amount: root.querySelector("[data-demo-amount]").value,
        }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) { showError(errorBox, body.message || `The node answered ${r.status}`); return; }
      result.append("Sent: ", el("a", { href: `/txs/${body.hash}`, class: "mono" }, body.hash.slice(0, 16) + "…"));
    } catch (e) {
      showError(errorBox, `The node could not be reached: ${e.message}`);
    }
  });
}

function initGatewaySettings(root) {
  const url = root.querySelector("[data-gateway-url]");
  const key = root.querySelector("[data-gateway-key]");
  if (!url.value) url.value = sessionStorage.getItem("agora-gateway-url") || "";
  key.value = sessionStorage.getItem("agora-gateway-key") || "";
}

// The SQL page: queries go to the node's `POST /v1/sql` (JSON), results become a table and, when
// the last column is a number, a bar chart of it by the first column. Saved queries (this
// browser's localStorage) form a dashboard that runs when the page opens.
async function runSql(sql, maxRows) {
  const r = await fetch("/v1/sql", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sql, max_rows: maxRows, format: "json" }),
  });
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch (_) { body = null; }
  if (r.status === 404 && !(body && body.code && body.code !== "not_found")) {
    throw new Error("This node keeps no analytics tables (it was started with --no-analytics).");
  }
  if (!r.ok) {
    throw new Error(body && body.message ? `${body.message} (${body.code})` : `The node answered ${r.status}: ${text.slice(0, 200)}`);
  }
  return {
    body,
    height: r.headers.get("x-agora-height"),
    ms: r.headers.get("x-agora-elapsed-ms"),
  };
}

function cellText(v) {
  if (v === null || v === undefined) return "NULL";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function sqlTable(result) {
  const cols = result.columns.map((c) => c.name);
  const table = el("table", { "data-sql-table": "" });
  table.append(el("thead", {}, el("tr", {}, ...cols.map((c) => el("th", { scope: "col" }, c)))));
  const body = el("tbody", {});
  for (const row of result.rows) {
    body.append(el("tr", {}, ...cols.map((c) => el("td", {}, cellText(row[c])))));
  }
  table.append(body);
  return table;
}

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// A bar chart of the last column (when it holds numbers) by the first; null when there is none.
function sqlChart(result, title) {
  const cols = result.columns;
  if (cols.length < 2 || result.rows.length < 1) return null;
  const value = cols[cols.length - 1].name;
  const label = cols[0].name;
  const points = result.rows.slice(0, 200).map((r) => [cellText(r[label]), Number(r[value])]);
  if (points.some(([, y]) => !Number.isFinite(y))) return null;
  const width = 600, height = 180, max = Math.max(...points.map(([, y]) => y), 0) || 1;
  const step = width / points.length;
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${width} ${height + 16}`, role: "img" });
  svg.append(svgEl("title", {}, `${title}: ${value} by ${label}, ${points.length} values, highest ${max}`));
  points.forEach(([x, y], i) => {
    const h = Math.max(0, (y / max) * height);
    const bar = svgEl("rect", { x: i * step + 1, y: height - h, width: Math.max(1, step - 2), height: h });
    bar.append(svgEl("title", {}, `${x}: ${y}`));
    svg.append(bar);
  });
  svg.append(svgEl("text", { x: 0, y: height + 14 }, points[0][0]));
  svg.append(svgEl("text", { x: width, y: height + 14, "text-anchor": "end" }, points[points.length - 1][0]));
  const fig = el("figure", {}, svg, el("figcaption", {}, `${value} by ${label}`));
  return fig;
}

function csvOf(result) {
  const cols = result.columns.map((c) => c.name);
  // A cell a spreadsheet would run as a formula starts with a quote instead.
  const esc = (raw) => {
    const s = /^[=+\-@\t\r]/.test(raw) ? `'${raw}` : raw;
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [cols.map(esc).join(",")];
  for (const row of result.rows) lines.push(cols.map((c) => esc(row[c] === null ? "" : cellText(row[c]))).join(","));
  return lines.join("\n") + "\n";
}

function savedQueries() {
  try { return JSON.parse(localStorage.getItem("agora-dashboard") || "[]"); } catch (_) { return []; }
}

async function renderDashboard(root) {
  const box = root.querySelector("[data-sql-dashboard]");
  box.replaceChildren();
  const saved = savedQueries();
  if (!saved.length) {
    box.append(el("p", { class: "muted" }, "Nothing saved yet: run a query, name it and save it."));
    return;
  }
  for (const [i, q] of saved.entries()) {
    const panel = el("section", { class: "panel", "data-dashboard-panel": q.name });
    const remove = el("button", { type: "button" }, "Remove");
    remove.addEventListener("click", () => {
      const all = savedQueries();
      all.splice(i, 1);
      localStorage.setItem("agora-dashboard", JSON.stringify(all));
      renderDashboard(root);
    });
    panel.append(el("h3", {}, q.name), remove);
    box.append(panel);
    try {
      const { body } = await runSql(q.sql, 200);
      const chart = sqlChart(body, q.name);
      panel.append(chart || el("div", { class: "scroll" }, sqlTable(body)));
    } catch (e) {
      panel.append(el("p", { class: "alert" }, e.message));
    }
  }
}

async function renderTables(box) {
  try {
    const r = await fetch("/v1/sql/tables");
    if (!r.ok) throw new Error("This node keeps no analytics tables (it was started with --no-analytics).");
    const t = await r.json();
    box.replaceChildren();
    for (const table of t.tables) {
      const list = el("table", {});
      list.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Column"), el("th", { scope: "col" }, "Type"), el("th", { scope: "col" }, "What it holds"))));
      const body = el("tbody", {});
      for (const c of table.columns) body.append(el("tr", {}, el("td", { class: "mono" }, c.name), el("td", {}, c.type + (c.nullable ? " (nullable)" : "")), el("td", {}, c.doc)));
      list.append(body);
      box.append(el("details", { "data-sql-schema": table.name }, el("summary", {}, `${table.name} — ${table.doc} (${table.kind})`), list));
    }
  } catch (e) {
    box.replaceChildren(el("p", { class: "alert" }, e.message));
  }
}

function initSql(root) {
  const query = root.querySelector("[data-sql-query]");
  const error = root.querySelector("[data-sql-error]");
  const status = root.querySelector("[data-sql-status]");
  const out = root.querySelector("[data-sql-result]");
  const chart = root.querySelector("[data-sql-chart]");
  const csv = root.querySelector("[data-sql-csv]");
  const params = new URLSearchParams(location.search);
  if (params.get("q")) query.value = params.get("q");
  root.querySelector("[data-sql-examples]").addEventListener("change", (e) => {
    if (e.target.value) query.value = e.target.value;
  });
  root.querySelector("[data-sql-form]").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(error, "");
    status.textContent = "Running…";
    out.replaceChildren();
    chart.hidden = true;
    csv.hidden = true;
    const maxRows = Number(root.querySelector("[data-sql-max-rows]").value) || 1000;
    try {
      const { body, height, ms } = await runSql(query.value, maxRows);
      status.textContent = `${body.rows.length} row(s) in ${ms} ms, tables at block ${height}`;
      out.append(sqlTable(body));
      const fig = sqlChart(body, "Result");
      if (fig) { chart.replaceChildren(...fig.childNodes); chart.hidden = false; }
      csv.href = URL.createObjectURL(new Blob([csvOf(body)], { type: "text/csv" }));
      csv.hidden = false;
      history.replaceState(null, "", `?q=${encodeURIComponent(query.value)}`);
    } catch (err) {
      status.textContent = "";
      showError(error, err.message);
    }
  });
  root.querySelector("[data-sql-save]").addEventListener("click", () => {
    const name = root.querySelector("[data-sql-name]").value.trim() || `Query ${savedQueries().length + 1}`;
    const all = savedQueries();
    all.push({ name, sql: query.value });
    localStorage.setItem("agora-dashboard", JSON.stringify(all));
    renderDashboard(document);
  });
  renderDashboard(document);
  renderTables(document.querySelector("[data-sql-tables]"));
}

// The anomalies panel: `GET /v1/anomalies`, each finding with its evidence in words and links
// to the transactions (or jobs) it names.
function initAnomalies(root) {
  const error = root.querySelector("[data-anomalies-error]");
  const status = root.querySelector("[data-anomalies-status]");
  const list = root.querySelector("[data-anomalies-list]");
  root.querySelector("[data-anomalies-form]").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(error, "");
    list.replaceChildren();
    status.textContent = "Looking…";
    const kind = root.querySelector("[data-anomalies-kind]").value;
    try {
      const r = await fetch(`/v1/anomalies?kind=${encodeURIComponent(kind)}`);
      const body = await r.json();
      if (!r.ok) throw new Error(`${body.message} (${body.code})`);
      status.textContent = `${body.findings.length} finding(s), tables at block ${body.height}`;
      for (const f of body.findings) {
        const links = f.evidence_ids.map((id) =>
          f.kind === "provider_drift" ? el("code", {}, id) : el("a", { href: `/txs/${id}` }, id.slice(0, 12) + "…"));
        const ids = el("p", { class: "muted" });
        links.forEach((l, i) => { if (i) ids.append(" "); ids.append(l); });
        list.append(el("li", { "data-anomaly": f.kind },
          el("strong", {}, f.kind.replace("_", " ")), ` (blocks ${f.from_height}–${f.to_height}) `,
          el("p", {}, f.evidence), ids));
      }
    } catch (err) {
      status.textContent = "";
      showError(error, err.message);
    }
  });
}

// A snippet from `GET /v1/search` (HTML-escaped text with the matching words in `<b>`) as
// nodes: text and bold only, never parsed as HTML.
function snippetNodes(html) {
  const text = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'").replace(/&amp;/g, "&");
  const out = [];
  html.split(/(<b>.*?<\/b>)/).forEach((part) => {
    if (part.startsWith("<b>")) out.push(el("b", {}, text(part.slice(3, -4))));
    else if (part) out.push(text(part));
  });
  return out;
}

// A link to a result, if its `url` is one of this app's pages or an http(s) page.
function resultLink(url, title) {
  if (url && (/^\/[^\/\\]/.test(url) || /^https?:\/\//.test(url))) return el("a", { href: url }, title);
  return el("span", {}, title);
}

// The search page: `GET /v1/search` with the box's words and filters; an account's feed from
// `GET /v1/feed/{address}`, each item with its reasons.
function initSearch(root) {
  const form = root.querySelector("[data-search-form]");
  const error = root.querySelector("[data-search-error]");
  const status = root.querySelector("[data-search-status]");
  const list = root.querySelector("[data-search-results]");
  let latest = 0;
  const run = async () => {
    // Only the newest search's answer is shown (an older one may arrive after it).
    const mine = ++latest;
    const q = root.querySelector("[data-search-q]").value.trim();
    showError(error, "");
    list.replaceChildren();
    if (!q) { status.textContent = ""; return; }
    status.textContent = "Searching…";
    const params = new URLSearchParams({ q, mode: root.querySelector("[data-search-mode]").value, limit: "20" });
    const kind = root.querySelector("[data-search-kind]").value;
    if (kind) params.set("kind", kind);
    try {
      const r = await fetch(`/v1/search?${params}`);
      if (r.status === 404) throw new Error("This node serves no search (start it with --search, or a devnet with its models).");
      const body = await r.json();
      if (mine !== latest) return;
      if (!r.ok) throw new Error(`${body.message} (${body.code})`);
      list.replaceChildren();
      status.textContent = `${body.hits.length} result(s) in ${body.took_ms} ms` +
        (body.height != null ? `, chain indexed to block ${body.height}` : "");
      for (const h of body.hits) {
        const how = h.exact ? "exact match" :
          `words ${h.bm25_rank ?? "–"} · meaning ${h.vector_rank ?? "–"}`;
        list.append(el("li", { "data-search-hit": h.id, "data-kind": h.kind },
          el("span", { class: "pill" }, h.kind), " ", resultLink(h.url, h.title),
          el("p", {}, ...snippetNodes(h.snippet)),
          el("p", { class: "muted" }, how)));
      }
    } catch (e) {
      if (mine !== latest) return;
      status.textContent = "";
      showError(error, e.message);
    }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
  // A link may name the kind (`/search?q=…&kind=audit`).
  const kindSelect = root.querySelector("[data-search-kind]");
  const linkedKind = new URLSearchParams(location.search).get("kind");
  if (linkedKind && Array.from(kindSelect.options).some((o) => o.value === linkedKind)) kindSelect.value = linkedKind;
  if (root.querySelector("[data-search-q]").value.trim()) run();
}

function initFeed(root) {
  const error = root.querySelector("[data-feed-error]");
  const status = root.querySelector("[data-feed-status]");
  const list = root.querySelector("[data-feed-items]");
  root.querySelector("[data-feed-form]").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(error, "");
    list.replaceChildren();
    const address = root.querySelector("[data-feed-address]").value.trim();
    if (!address) return;
    status.textContent = "Ranking…";
    try {
      const r = await fetch(`/v1/feed/${encodeURIComponent(address)}?limit=20`);
      if (r.status === 404) throw new Error("This node serves no feeds (start it with --search).");
      const body = await r.json();
      if (!r.ok) throw new Error(`${body.message} (${body.code})`);
      status.textContent = `${body.items.length} item(s) from ${body.activity} of its own on-chain records` +
        (body.following.length ? `; following ${body.following.join("; ")}` : "");
      for (const item of body.items) {
        const why = el("ul", { class: "muted", "data-feed-reasons": "" });
        for (const r of item.reasons) why.append(el("li", {}, r));
        list.append(el("li", { "data-feed-item": item.id },
          el("span", { class: "pill" }, item.kind), " ", resultLink(item.url, item.title),
          el("p", {}, item.summary), why));
      }
    } catch (err) {
      status.textContent = "";
      showError(error, err.message);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-proof]").forEach(initProof);
  document.querySelectorAll("table[data-live-blocks]").forEach(initLiveBlocks);
  document.querySelectorAll("[data-gateway-settings]").forEach(initGatewaySettings);
  document.querySelectorAll("[data-chat]").forEach(initChat);
  document.querySelectorAll("[data-embed]").forEach(initEmbed);
  document.querySelectorAll("[data-audit]").forEach(initAudit);
  document.querySelectorAll("[data-demo-transfer]").forEach(initDemoTransfer);
  document.querySelectorAll("[data-sql]").forEach(initSql);
  document.querySelectorAll("[data-anomalies]").forEach(initAnomalies);
  document.querySelectorAll("[data-search]").forEach(initSearch);
  document.querySelectorAll("[data-feed]").forEach(initFeed);
});
