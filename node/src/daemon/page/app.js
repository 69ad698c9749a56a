// The labeling page. Keyboard first: the next sample is already fetched and decoded, so a key
// shows it at once; answers go to the node through an outbox kept in localStorage, in order, and
// are retried with the same request id until the node has them (the node refuses a replayed id,
// which the outbox takes as "done").
"use strict";

(() => {
  const PREFETCH = 6; // samples kept ready ahead of the one shown
  const UNAIDED = 5; // answers given without the model's view before it is shown by default
  const POLL_MS = 5000;
  const $ = (id) => document.getElementById(id);

  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const state = {
    dataset: null, // {id, name, kind, labels}
    queue: [], // items ready to show, best first
    history: [], // items shown in this session, oldest first
    at: -1, // index in history of the item shown
    fetching: null,
    showWhy: false,
    outbox: [],
    sending: false,
    offline: false,
    peers: null, // peers online at the last progress poll
  };

  // ---- the API -----------------------------------------------------------------------------
  function requestId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + token, ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    if (!response.ok) {
      let message = "the node answered " + response.status;
      try {
        message = (await response.json()).error || message;
      } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, message);
    }
    return response;
  }
  const getJson = async (path) => (await api(path)).json();
  const ds = () => "/api/v1/datasets/" + state.dataset.id;

  // ---- messages ----------------------------------------------------------------------------
  function showError(message) {
    const e = $("error");
    e.textContent = message;
    e.hidden = !message;
  }
  function say(message) {
    $("state").textContent = message;
  }
  function showSync(peers) {
    if (peers != null) state.peers = peers;
    peers = state.peers;
    const waiting = state.outbox.length;
    const parts = [];
    if (state.offline) {
      parts.push(`The node does not answer: ${waiting} answer(s) are kept in this browser and will be sent when it is back.`);
    } else if (peers === 0) {
      parts.push("No peer is reachable: your labels are saved on this computer and will sync with the network later.");
    }
    const s = $("sync");
    s.textContent = parts.join(" ");
    s.hidden = parts.length === 0;
  }

  // ---- keys --------------------------------------------------------------------------------
  const ACTIONS = ["prev", "next", "skip", "unsure", "undo", "toggle"];
  const ACTION_DEFAULTS = { prev: "ArrowLeft", next: "ArrowRight", skip: " ", unsure: "/", undo: "Backspace", toggle: "\\" };
  const LABEL_KEYS = "123456789abcdefghijklmnopqrstuvwxyz".split("");
  const keyName = (k) => (k === " " ? "Space" : k);

  function keymapKey() {
    return "swarmlabel:keys:" + state.dataset.labels.join("\u0001");
  }
  function defaultKeymap() {
    const map = { ...ACTION_DEFAULTS };
    state.dataset.labels.forEach((label, i) => {
      if (i < LABEL_KEYS.length) map["label:" + label] = LABEL_KEYS[i];
    });
    return map;
  }
  function loadKeymap() {
    try {
      const saved = JSON.parse(localStorage.getItem(keymapKey()) || "null");
      if (saved && typeof saved === "object") return { ...defaultKeymap(), ...saved };
    } catch (_) { /* a damaged entry: defaults */ }
    return defaultKeymap();
  }
  let keymap = {};
  function saveKeymap() {
    localStorage.setItem(keymapKey(), JSON.stringify(keymap));
  }
  function actionOf(key) {
    for (const [action, k] of Object.entries(keymap)) if (k === key) return action;
    return null;
  }

  // ---- items: a pick and its content, loaded before it is shown -----------------------------
  function makeItem(pick) {
    const item = { pick, answer: pick.mine || null, node: null };
    item.ready = loadContent(item).catch((e) => {
      const p = document.createElement("p");
      p.className = "placeholder";
      p.textContent = "This sample could not be loaded: " + e.message;
      item.node = p;
    });
    return item;
  }

  async function loadContent(item) {
    const response = await api(ds() + "/samples/" + item.pick.sample);
    if (item.pick.media === "image") {
      const url = URL.createObjectURL(await response.blob());
      const img = new Image();
      img.src = url;
      img.alt = "Sample " + item.pick.sample.slice(0, 12);
      await img.decode();
      item.node = img;
    } else if (item.pick.media === "text") {
      const p = document.createElement("p");
      p.className = "text";
      p.textContent = await response.text();
      item.node = p;
    } else {
      const row = await response.json();
      const grid = document.createElement("div");
      grid.className = "row";
      grid.setAttribute("role", "table");
      grid.setAttribute("aria-label", "Table row");
      row.columns.forEach((name, i) => {
        const cell = document.createElement("div");
        cell.setAttribute("role", "row");
        const k = document.createElement("span");
        k.setAttribute("role", "rowheader");
        k.textContent = name;
        const v = document.createElement("span");
        v.setAttribute("role", "cell");
        v.textContent = String(row.values[i]);
        cell.append(k, v);
        grid.append(cell);
      });
      item.node = grid;
    }
  }

  function held() {
    const ids = new Set(state.queue.map((i) => i.pick.sample));
    for (const i of state.history.slice(-100)) ids.add(i.pick.sample);
    for (const o of state.outbox) if (o.body && o.body.sample) ids.add(o.body.sample);
    return Array.from(ids).slice(-250);
  }

  async function refill() {
    if (state.fetching || !state.dataset || state.queue.length >= PREFETCH) return state.fetching;
    state.fetching = (async () => {
      try {
        const want = PREFETCH + 2 - state.queue.length;
        const exclude = held().join(",");
        const picks = await getJson(`${ds()}/queue?n=${want}&exclude=${exclude}`);
        const have = new Set(held());
        for (const pick of picks) if (!have.has(pick.sample)) state.queue.push(makeItem(pick));
        state.offline = false;
      } catch (e) {
        if (e instanceof ApiError) showError(e.message);
        else state.offline = true;
      } finally {
        state.fetching = null;
      }
    })();
    return state.fetching;
  }

  // ---- showing -----------------------------------------------------------------------------
  function current() {
    return state.history[state.at] || null;
  }

  function render(item) {
    const stage = $("stage");
    if (!item) {
      stage.replaceChildren(placeholder("Nothing left to label here for now."));
      stage.dataset.sample = "";
      renderWhy(null);
      return;
    }
    if (!item.shownAt && item.node) item.shownAt = performance.now();
    const children = [item.node || placeholder("Loading…")];
    if (item.answer) {
      const a = document.createElement("span");
      a.className = "answered";
      a.textContent = "Your answer: " + item.answer;
      children.push(a);
    }
    stage.replaceChildren(...children);
    stage.dataset.sample = item.pick.sample;
    stage.setAttribute("aria-label", `Sample ${state.at + 1} of this session` + (item.answer ? `, answered ${item.answer}` : ""));
    for (const b of $("labels").children) b.classList.toggle("chosen", b.dataset.label === item.answer);
    renderWhy(item);
  }

  function placeholder(text) {
    const p = document.createElement("p");
    p.className = "placeholder";
    p.textContent = text;
    return p;
  }

  function renderWhy(item) {
    const panel = $("why");
    panel.hidden = !state.showWhy || !item;
    $("toggle").setAttribute("aria-pressed", String(state.showWhy));
    const unaided = unaidedCount();
    $("anchor-note").textContent = unaided < UNAIDED && !state.showWhy
      ? `The model's view stays hidden for your first ${UNAIDED} answers, so that it does not sway you (${unaided} so far); press ${keyName(keymap.toggle)} to show it.`
      : "";
    if (!item) return;
    const p = item.pick;
    $("why-text").textContent = `Chosen by ${p.strategy}` + (p.score == null ? "" : ` (score ${p.score.toFixed(3)})`) + `: ${p.why}`;
    const list = $("guesses");
    list.replaceChildren(...p.guesses.map((g) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = g.label;
      const m = document.createElement("meter");
      m.min = 0; m.max = 1; m.value = g.probability;
      m.setAttribute("aria-label", `${g.label}: ${(g.probability * 100).toFixed(0)} percent`);
      const pct = document.createElement("span");
      pct.textContent = (g.probability * 100).toFixed(0) + "%";
      li.append(name, m, pct);
      return li;
    }));
    if (p.guesses.length === 0) list.replaceChildren(placeholder("The model has no guess yet."));
  }

  async function advance() {
    if (state.at + 1 < state.history.length) {
      state.at += 1;
      render(current());
      return;
    }
    let item = state.queue.shift();
    if (!item) {
      render(null);
      say("Fetching more samples…");
      await refill();
      item = state.queue.shift();
      say("");
    }
    if (item && !item.node) await item.ready;
    if (item) {
      state.history.push(item);
      if (state.history.length > 500) state.history.shift();
      state.at = state.history.length - 1;
    }
    render(item || null);
    refill();
  }

  // ---- answering ---------------------------------------------------------------------------
  function unaidedKey() {
    return "swarmlabel:unaided:" + state.dataset.id;
  }
  function unaidedCount() {
    return state.dataset ? Number(localStorage.getItem(unaidedKey()) || 0) : 0;
  }

  function answer(kind, label) {
    const item = current();
    if (!item) return;
    const body = { sample: item.pick.sample };
    if (kind === "label") body.label = label;
    else body[kind] = true;
    const top = item.pick.guesses[0];
    if (state.showWhy && top && kind === "label") body.suggestion = { label: top.label, probability: top.probability };
    if (!state.showWhy && kind === "label") {
      const n = unaidedCount() + 1;
      localStorage.setItem(unaidedKey(), String(n));
      if (n === UNAIDED) state.showWhy = true;
    }
    // The time on this sample, for the node's answer-time metric (first answers only).
    if (item.shownAt && !item.answer) body.think_ms = Math.round(performance.now() - item.shownAt);
    item.answer = kind === "label" ? label : kind;
    enqueue({ path: ds() + "/labels", body });
    advance();
  }

  function undo() {
    // Shown at once: the newest answer this page gave; the node reverts the same one.
    let back = -1;
    for (let i = state.history.length - 1; i >= 0; i--) {
      const a = state.history[i].answer;
      if (a && a !== "skip") { back = i; break; }
    }
    enqueue({ path: ds() + "/undo", body: null, undo: true });
    if (back >= 0) {
      const item = state.history.splice(back, 1)[0];
      item.answer = null;
      state.history.push(item);
      state.at = state.history.length - 1;
      render(item);
      say("Undone: label this sample again, or skip it.");
    }
  }

  function enqueue(change) {
    change.id = requestId();
    change.dataset = state.dataset.id;
    state.outbox.push(change);
    saveOutbox();
    flush();
  }
  function saveOutbox() {
    localStorage.setItem("swarmlabel:outbox", JSON.stringify(state.outbox));
  }

  async function flush() {
    if (state.sending) return;
    state.sending = true;
    try {
      while (state.outbox.length) {
        const change = state.outbox[0];
        try {
          const response = await api(change.path, {
            method: "POST",
            headers: { "Content-Type": "application/json", "X-Request-Id": change.id },
            body: change.body ? JSON.stringify(change.body) : "",
          });
          if (change.undo && state.history.length === 0) {
            const undone = await response.json();
            showUndone(undone.sample);
          }
          state.offline = false;
        } catch (e) {
          if (!(e instanceof ApiError) || e.status >= 500) {
            // The node is away or busy: keep the change and try again.
            state.offline = !(e instanceof ApiError);
            showSync(null);
            setTimeout(flush, 2000);
            return;
          }
          if (e.status === 401) {
            showError(e.message);
            return;
          }
          if (e.status !== 409 || !/already applied/.test(e.message)) showError(e.message);
        }
        state.outbox.shift();
        saveOutbox();
      }
      showSync(null);
      scheduleProgress();
    } finally {
      state.sending = false;
    }
  }

  function showUndone(sample) {
    const item = makeItem({ sample, media: mediaOf(), strategy: "undo", score: null, why: "you undid your label of this sample", guesses: [] });
    item.ready.then(() => {
      state.history.push(item);
      state.at = state.history.length - 1;
      render(item);
    });
  }
  function mediaOf() {
    return { images: "image", text: "text", csv: "row" }[state.dataset.kind] || "image";
  }

  // ---- progress ----------------------------------------------------------------------------
  let progressTimer = null;
  function scheduleProgress() {
    clearTimeout(progressTimer);
    progressTimer = setTimeout(progress, 300);
  }
  async function progress() {
    clearTimeout(progressTimer);
    progressTimer = setTimeout(progress, POLL_MS);
    if (!state.dataset) return;
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    try {
      const p = await getJson(`${ds()}/progress?since_ms=${midnight.getTime()}`);
      $("today").textContent = p.my_labels_since;
      $("mine").textContent = p.my_labels;
      $("network").textContent = p.network_labels;
      $("labelled").textContent = `${p.samples_labelled} / ${p.samples}`;
      $("agreement").textContent = p.agreement == null ? "–" : p.agreement.toFixed(2);
      $("agreement").title = p.agreement_note || "Krippendorff's alpha between annotators";
      $("peers").textContent = p.peers_online;
      drawCurve(p.accuracy);
      state.offline = false;
      showSync(p.peers_online);
    } catch (e) {
      if (!(e instanceof ApiError)) {
        state.offline = true;
        showSync(null);
      }
    }
  }
  function drawCurve(points) {
    const svg = $("curve");
    if (!points.length) {
      svg.replaceChildren();
      $("curve-note").textContent = "No model yet";
      return;
    }
    const n = points.length;
    const xy = points.map((p, i) => `${n === 1 ? 60 : (i * 120) / (n - 1)},${32 - p.accuracy * 32}`).join(" ");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", xy);
    svg.replaceChildren(line);
    const last = points[n - 1];
    $("curve-note").textContent = `Model accuracy ${(last.accuracy * 100).toFixed(1)}% after ${last.labels} labels`;
    svg.setAttribute("aria-label", `Model accuracy over time, now ${(last.accuracy * 100).toFixed(1)} percent`);
  }

  // ---- wiring ------------------------------------------------------------------------------
  function drawButtons() {
    const nav = $("labels");
    nav.replaceChildren(...state.dataset.labels.map((label) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.label = label;
      const key = keymap["label:" + label];
      b.textContent = label;
      if (key) {
        const k = document.createElement("kbd");
        k.textContent = keyName(key);
        b.append(k);
        b.setAttribute("aria-keyshortcuts", key === " " ? "Space" : key);
      }
      b.setAttribute("aria-label", `Label ${label}` + (key ? `, key ${keyName(key)}` : ""));
      b.addEventListener("click", () => answer("label", label));
      return b;
    }));
    for (const action of ACTIONS) {
      const b = $(action);
      b.querySelector("kbd").textContent = keyName(keymap[action]);
      b.setAttribute("aria-keyshortcuts", keymap[action] === " " ? "Space" : keymap[action]);
    }
  }

  function run(action) {
    if (action.startsWith("label:")) return answer("label", action.slice(6));
    switch (action) {
      case "skip": return answer("skip");
      case "unsure": return answer("unsure");
      case "undo": return undo();
      case "prev":
        if (state.at > 0) { state.at -= 1; render(current()); }
        return;
      case "next":
        if (state.at + 1 < state.history.length) { state.at += 1; render(current()); }
        else say("Label or skip this sample to go on.");
        return;
      case "toggle":
        state.showWhy = !state.showWhy;
        return renderWhy(current());
    }
  }

  let remapping = null;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if ($("keymap").open) {
      if (remapping && event.key !== "Escape") {
        event.preventDefault();
        keymap[remapping] = event.key;
        saveKeymap();
        remapping = null;
        drawKeymap();
        drawButtons();
      }
      return;
    }
    const tag = event.target && event.target.tagName;
    if (tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") return;
    const action = actionOf(event.key);
    if (!action || !state.dataset) return;
    // Space and Enter would also press a focused button: the key is the action, once.
    event.preventDefault();
    if (!event.repeat || action === "prev" || action === "next") run(action);
  });

  for (const action of ACTIONS) $(action).addEventListener("click", () => run(action));

  function drawKeymap() {
    const table = $("keymap-table");
    const rows = Object.keys(keymap).map((action) => {
      const tr = document.createElement("tr");
      const name = document.createElement("td");
      name.textContent = action.startsWith("label:") ? "Label " + action.slice(6) : action;
      const key = document.createElement("td");
      const kbd = document.createElement("kbd");
      kbd.textContent = remapping === action ? "press a key…" : keyName(keymap[action]);
      key.append(kbd);
      const change = document.createElement("td");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Change";
      b.setAttribute("aria-label", "Change the key of " + name.textContent);
      b.addEventListener("click", () => { remapping = action; drawKeymap(); });
      change.append(b);
      tr.append(name, key, change);
      return tr;
    });
    table.replaceChildren(...rows);
  }
  $("keys").addEventListener("click", () => { drawKeymap(); $("keymap").showModal(); });
  $("keymap-close").addEventListener("click", () => { remapping = null; $("keymap").close(); });
  $("keymap-reset").addEventListener("click", () => {
    keymap = defaultKeymap();
    saveKeymap();
    drawKeymap();
    drawButtons();
  });

  // ---- instructions -------------------------------------------------------------------------
  // The owner's markdown, rendered with createElement and textContent only: whatever it holds
  // (HTML, script, image or link syntax) ends up as text, never as markup or a request. Headings,
  // paragraphs, lists, **bold**, *italic* and `code` are kept; a link shows as "text (address)".
  function inline(text) {
    const out = document.createDocumentFragment();
    const pattern = /(\*\*[^*]+\*\*|\*[^*\s][^*]*\*|_[^_\s][^_]*_|`[^`]+`|!?\[[^\]]*\]\([^)\s]*\))/g;
    let at = 0;
    for (const m of text.matchAll(pattern)) {
      if (m.index > at) out.append(document.createTextNode(text.slice(at, m.index)));
      const t = m[0];
      let node;
      if (t.startsWith("**")) { node = document.createElement("strong"); node.textContent = t.slice(2, -2); }
      else if (t.startsWith("`")) { node = document.createElement("code"); node.textContent = t.slice(1, -1); }
      else if (t.startsWith("*") || t.startsWith("_")) { node = document.createElement("em"); node.textContent = t.slice(1, -1); }
      else {
        const [, image, label, href] = t.match(/^(!?)\[([^\]]*)\]\(([^)]*)\)$/);
        node = document.createTextNode(image ? `[image: ${label}]` : `${label} (${href})`);
      }
      out.append(node);
      at = m.index + t.length;
    }
    if (at < text.length) out.append(document.createTextNode(text.slice(at)));
    return out;
  }
  function renderMarkdown(markdown, into) {
    into.replaceChildren();
    let list = null;
    let para = null;
    for (const raw of markdown.split(/\r?\n/)) {
      const line = raw.trimEnd();
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      const item = line.match(/^\s*(?:[-*+]|(\d+)[.)])\s+(.*)$/);
      if (!line.trim()) { list = null; para = null; continue; }
      if (heading) {
        const h = document.createElement(`h${Math.min(4, heading[1].length + 1)}`);
        h.append(inline(heading[2]));
        into.append(h);
        list = null; para = null;
      } else if (item) {
        const kind = item[1] ? "ol" : "ul";
        if (!list || list.tagName.toLowerCase() !== kind) { list = document.createElement(kind); into.append(list); }
        const li = document.createElement("li");
        li.append(inline(item[2]));
        list.append(li);
        para = null;
      } else {
        if (!para) { para = document.createElement("p"); into.append(para); } else { para.append(document.createTextNode(" ")); }
        para.append(inline(line.trim()));
        list = null;
      }
    }
  }
  function showBrief(dataset) {
    const description = dataset.description || "";
    const instructions = dataset.instructions || "";
    $("description").textContent = description;
    $("description").hidden = !description;
    renderMarkdown(instructions, $("instructions"));
    $("brief").hidden = !description && !instructions;
  }

  async function choose(dataset) {
    state.dataset = dataset;
    showBrief(dataset);
    state.queue = [];
    state.history = [];
    state.at = -1;
    localStorage.setItem("swarmlabel:dataset", dataset.id);
    keymap = loadKeymap();
    state.showWhy = unaidedCount() >= UNAIDED;
    drawButtons();
    await refill();
    await advance();
    progress();
  }

  async function start() {
    if (!token) {
      showError("This page needs the node's token: open it with the URL `swarmlabel run` printed (it ends with #token=…).");
      return;
    }
    try {
      state.outbox = JSON.parse(localStorage.getItem("swarmlabel:outbox") || "[]");
    } catch (_) {
      state.outbox = [];
    }
    let datasets;
    try {
      datasets = await getJson("/api/v1/datasets");
    } catch (e) {
      showError(e.message);
      return;
    }
    if (!datasets.length) {
      showError("This node has no dataset yet: join one with `swarmlabel join ID`, then reload this page.");
      return;
    }
    const select = $("dataset");
    select.replaceChildren(...datasets.map((d) => {
      const o = document.createElement("option");
      o.value = d.id;
      o.textContent = `${d.name} (${d.kind}, ${d.samples} samples)`;
      return o;
    }));
    const wanted = new URLSearchParams(location.hash.slice(1)).get("dataset") || localStorage.getItem("swarmlabel:dataset");
    const first = datasets.find((d) => d.id === wanted) || datasets[0];
    select.value = first.id;
    select.addEventListener("change", () => {
      choose(datasets.find((d) => d.id === select.value));
      $("stage").focus();
    });
    flush();
    await choose(first);
    $("stage").focus();
  }

  window.addEventListener("online", flush);
  start();
})();
