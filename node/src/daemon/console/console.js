// The owner's console: how the labelling of a dataset this node owns is going, and the
// annotators the screening flags, for the owner to decide on. Keyboard first: j / k select an
// annotator, b asks to ban it, y confirms (the ban is the owner's signed policy, sent to every
// peer), n or Escape cancels. Text only: nothing from peers is ever inserted as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const state = { dataset: null, annotators: [], at: 0, asking: null };

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + token, ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    if (!response.ok) {
      let message = "the node answered " + response.status;
      try {
        message = (await response.json()).error || message;
      } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return response.json();
  }
  const ds = () => "/api/v1/datasets/" + state.dataset.id;
  const say = (text) => { $("message").textContent = text; };
  const cell = (text) => {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  };

  async function start() {
    try {
      const owned = (await api("/api/v1/datasets")).filter((d) => d.owned);
      if (owned.length === 0) {
        say("This node owns no dataset: the console is for the data owner's node.");
        return;
      }
      $("dataset").replaceChildren(...owned.map((d) => {
        const o = document.createElement("option");
        o.value = d.id;
        o.textContent = d.name;
        return o;
      }));
      $("dataset").addEventListener("change", () => {
        state.dataset = owned.find((d) => d.id === $("dataset").value);
        refresh();
      });
      state.dataset = owned[0];
      await refresh();
    } catch (e) {
      say(e.message);
    }
  }

  async function refresh() {
    const [stats, consensus, progress, policy] = await Promise.all([
      api(ds() + "/labels/stats"),
      api(ds() + "/labels/consensus"),
      api(ds() + "/progress"),
      api(ds() + "/policy"),
    ]);
    renderClasses(consensus.samples, stats.labels, progress.samples);
    renderCurve(progress.accuracy);
    const banned = new Set(policy.banned.map((b) => b.key));
    state.annotators = stats.annotators.filter((a) => !banned.has(a.annotator));
    state.at = Math.min(state.at, Math.max(0, state.annotators.length - 1));
    renderAnnotators();
    document.body.dataset.ready = "true";
  }

  function renderClasses(samples, labels, total) {
    const counts = new Map(labels.map((l) => [l, 0]));
    for (const s of samples) if (s.label != null) counts.set(s.label, (counts.get(s.label) || 0) + 1);
    const most = Math.max(1, ...counts.values());
    const rows = labels.map((label) => {
      const tr = document.createElement("tr");
      tr.dataset.label = label;
      const n = counts.get(label);
      const bar = document.createElement("td");
      bar.className = "bar-cell";
      const span = document.createElement("span");
      span.style.width = Math.round((n / most) * 12) + "em";
      bar.append(span);
      tr.append(cell(label), cell(String(n)), bar);
      return tr;
    });
    $("classes").tBodies[0].replaceChildren(...rows);
    const labelled = samples.filter((s) => s.votes > 0).length;
    const target = state.dataset.redundancy || 1;
    const atTarget = samples.filter((s) => s.votes >= target).length;
    $("coverage").textContent =
      `${atTarget} of ${total} samples have the ${target} label(s) wanted; ${labelled} have at least one`;
  }

  function renderCurve(points) {
    const svg = $("curve");
    const list = $("curve-points");
    list.replaceChildren(...points.map((p) => {
      const li = document.createElement("li");
      li.textContent = `${p.labels} labels: ${(p.accuracy * 100).toFixed(1)} %`;
      return li;
    }));
    if (points.length === 0) {
      svg.replaceChildren();
      return;
    }
    const most = Math.max(1, ...points.map((p) => p.labels));
    const xy = points.map((p) => [(p.labels / most) * 196 + 2, 58 - p.accuracy * 56]);
    const SVG = "http://www.w3.org/2000/svg";
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", xy.map(([x, y]) => `${x},${y}`).join(" "));
    const dots = xy.map(([x, y]) => {
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", x);
      c.setAttribute("cy", y);
      c.setAttribute("r", 1.5);
      return c;
    });
    svg.replaceChildren(line, ...dots);
  }

  function renderAnnotators() {
    const rows = state.annotators.map((a, i) => {
      const tr = document.createElement("tr");
      tr.dataset.key = a.annotator;
      if (a.flag) tr.classList.add("flagged");
      if (i === state.at) tr.classList.add("selected");
      const reliability = a.reliability == null ? "–" : a.reliability.toFixed(3);
      const flag = a.flag ? `${a.flag.kind}: ${a.flag.reason}` : "";
      tr.append(cell(String(i + 1)), cell(a.annotator.slice(0, 16) + "…"), cell(reliability), cell(String(a.votes)), cell(flag));
      return tr;
    });
    $("annotators").tBodies[0].replaceChildren(...rows);
  }

  function ask() {
    const a = state.annotators[state.at];
    if (!a) return;
    state.asking = a;
    $("confirm-text").textContent =
      `Ban ${a.annotator.slice(0, 16)}…? Its labels leave consensus, statistics, exports and the merged model on every node. y bans, n cancels.`;
    $("confirm").hidden = false;
  }

  async function ban() {
    const a = state.asking;
    state.asking = null;
    $("confirm").hidden = true;
    const reason = a.flag ? `flagged: ${a.flag.kind}` : "banned from the console";
    try {
      await api(ds() + "/policy", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Request-Id": crypto.randomUUID() },
        body: JSON.stringify({ change: "ban", keys: [a.annotator], reason }),
      });
      say(`Banned ${a.annotator.slice(0, 16)}…`);
      await refresh();
    } catch (e) {
      say(e.message);
    }
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT") return;
    if (state.asking) {
      if (e.key === "y") ban();
      else if (e.key === "n" || e.key === "Escape") {
        state.asking = null;
        $("confirm").hidden = true;
      }
      return;
    }
    if (e.key === "j") state.at = Math.min(state.at + 1, state.annotators.length - 1);
    else if (e.key === "k") state.at = Math.max(state.at - 1, 0);
    else if (e.key === "b") return ask();
    else return;
    renderAnnotators();
  });

  start();
})();
