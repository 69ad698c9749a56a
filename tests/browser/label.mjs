// Drives the labeling page of a running node in Debian's Chromium (headless), for
// cli/tests/it/browser.rs. Usage: node label.mjs URL TOKEN OUTDIR [label|refuse|latency|restart]
//
//   label    labels 5 samples with the keyboard, undoes the last with Backspace, waits until the
//            node has every change, saves OUTDIR/label.png; prints {"labelled":[...],"undone":...,
//            "brief":{...}} (brief: the instructions as the page shows them)
//   refuse   sends a label with a foreign Host header and one without the token, from Node's
//            http client, and one without the token from inside the page; prints each status
//            and message
//   latency  labels 50 samples at a fast human pace (one key every 150 ms) and measures, in the
//            page, keydown to the frame that shows the next sample; prints p50/p99 in ms
//   restart  labels one sample (key 1) and prints {"step":"labelled",...}; after the line "down"
//            on stdin (the node was stopped) labels the next (key 2) into the outbox and prints
//            {"step":"queued",...}; after "up URL TOKEN" (the node runs again) opens URL with the
//            new token in the same browser profile, waits until the outbox is empty and prints
//            {"step":"sent",...}
//
// Every result is one JSON line on stdout; a failure exits non-zero with a sentence on stderr.
import { chromium } from "playwright-core";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";

const [url, token, outdir, mode = "label"] = process.argv.slice(2);
if (!url || !token || !outdir) {
  console.error("usage: node label.mjs URL TOKEN OUTDIR [label|refuse|latency|restart]");
  process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });
const HANG = 60_000;

async function launch() {
  const profile = fs.mkdtempSync(path.join(outdir, "profile-"));
  // A fresh profile each run (playwright passes it as --user-data-dir).
  return chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1100, height: 800 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

async function openPage(browser) {
  const page = await browser.newPage();
  page.setDefaultTimeout(HANG);
  page.on("pageerror", (e) => console.error("page error: " + e.message));
  await page.goto(`${url}/#token=${token}`);
  await page.waitForFunction(() => (document.getElementById("stage").dataset.sample || "").length === 64);
  return page;
}

const shown = (page) => page.evaluate(() => document.getElementById("stage").dataset.sample);
const waitOther = (page, before) =>
  page.waitForFunction((b) => {
    const s = document.getElementById("stage").dataset.sample;
    return s && s.length === 64 && s !== b;
  }, before);
const outboxEmpty = (page) =>
  page.waitForFunction(() => (localStorage.getItem("swarmlabel:outbox") || "[]") === "[]");

async function label() {
  const browser = await launch();
  try {
    const page = await openPage(browser);
    const labelled = [];
    for (const key of ["1", "2", "3", "4", "1"]) {
      const before = await shown(page);
      labelled.push(before);
      await page.keyboard.press(key);
      await waitOther(page, before);
    }
    const before = await shown(page);
    await page.keyboard.press("Backspace");
    await waitOther(page, before);
    const undone = await shown(page);
    await outboxEmpty(page);
    // The page's own progress figures catch up: four labels are the human's now.
    await page.waitForFunction(() => document.getElementById("mine").textContent === "4");
    const error = await page.evaluate(() => {
      const e = document.getElementById("error");
      return e.hidden ? null : e.textContent;
    });
    await page.screenshot({ path: path.join(outdir, "label.png") });
    // The owner's instructions as the page shows them: visible text, and what markup they became.
    const brief = await page.evaluate(() => {
      const box = document.getElementById("brief");
      const body = document.getElementById("instructions");
      return {
        shown: !box.hidden && box.open,
        description: document.getElementById("description").textContent,
        text: body.innerText,
        strong: [...body.querySelectorAll("strong")].map((e) => e.textContent),
        items: body.querySelectorAll("li").length,
        markup: [...body.querySelectorAll("*")].map((e) => e.tagName.toLowerCase()),
      };
    });
    console.log(JSON.stringify({ labelled, undone, error, brief }));
  } finally {
    await browser.close();
  }
}

function rawPost(target, headers, body) {
  return new Promise((resolve, reject) => {
    const u = new URL(target);
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname, method: "POST", headers: { "Content-Type": "application/json", ...headers } },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode, body: text }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

async function refuse() {
  const browser = await launch();
  try {
    const page = await openPage(browser);
    const sample = await shown(page);
    const datasets = await page.evaluate(async (t) => (await fetch("/api/v1/datasets", { headers: { Authorization: "Bearer " + t } })).json(), token);
    const target = `${url}/api/v1/datasets/${datasets[0].id}/labels`;
    const body = { sample, label: datasets[0].labels[0] };
    const port = new URL(url).port;
    const foreignHost = await rawPost(target, { Host: `evil.example:${port}`, Authorization: "Bearer " + token, "X-Request-Id": "foreign-host-1" }, body);
    const noToken = await rawPost(target, { "X-Request-Id": "no-token-0001" }, body);
    const inPage = await page.evaluate(async ([t, b]) => {
      const r = await fetch(t, { method: "POST", headers: { "Content-Type": "application/json", "X-Request-Id": "in-page-no-token" }, body: JSON.stringify(b) });
      return { status: r.status, body: await r.text() };
    }, [target, body]);
    console.log(JSON.stringify({ sample, foreign_host: foreignHost, no_token: noToken, in_page_no_token: inPage }));
  } finally {
    await browser.close();
  }
}

async function latency() {
  const browser = await launch();
  try {
    const page = await openPage(browser);
    // Instrumentation of the test, not of the page: keydown (capture, before the page's handler)
    // to the animation frame after the stage shows another sample.
    await page.evaluate(() => {
      window.__timings = [];
      let t0 = null;
      window.addEventListener("keydown", () => { t0 = performance.now(); }, { capture: true });
      const stage = document.getElementById("stage");
      new MutationObserver(() => {
        if (t0 === null) return;
        const start = t0;
        t0 = null;
        requestAnimationFrame(() => window.__timings.push(performance.now() - start));
      }).observe(stage, { attributes: true, attributeFilter: ["data-sample"] });
    });
    const keys = ["1", "2", "3", "4"];
    for (let i = 0; i < 50; i++) {
      const before = await shown(page);
      await page.keyboard.press(keys[i % keys.length]);
      await waitOther(page, before);
      await page.waitForFunction((n) => window.__timings.length >= n, i + 1);
      await page.waitForTimeout(150); // a fast human's pace between answers
    }
    await outboxEmpty(page);
    const t = (await page.evaluate(() => window.__timings)).slice().sort((a, b) => a - b);
    const q = (p) => t[Math.min(t.length - 1, Math.ceil(p * t.length) - 1)];
    console.log(JSON.stringify({ labels: t.length, p50_ms: +q(0.5).toFixed(2), p99_ms: +q(0.99).toFixed(2), max_ms: +t[t.length - 1].toFixed(2) }));
  } finally {
    await browser.close();
  }
}

async function restart() {
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const next = async () => (await lines.next()).value || "";
  const browser = await launch();
  try {
    const page = await openPage(browser);
    const first = await shown(page);
    await page.keyboard.press("1");
    await waitOther(page, first);
    await outboxEmpty(page);
    const second = await shown(page);
    console.log(JSON.stringify({ step: "labelled", first, origin: new URL(page.url()).origin }));
    if ((await next()) !== "down") throw new Error("expected the line 'down'");
    await page.keyboard.press("2");
    await page.waitForFunction(() => JSON.parse(localStorage.getItem("swarmlabel:outbox") || "[]").length === 1);
    console.log(JSON.stringify({ step: "queued", second }));
    const [word, newUrl, newToken] = (await next()).split(" ");
    if (word !== "up") throw new Error("expected the line 'up URL TOKEN'");
    // The page as the user opens it again (`swarmlabel page`): same address, this run's token.
    await page.goto(`${newUrl}/#token=${newToken}`);
    await page.reload();
    await outboxEmpty(page);
    console.log(JSON.stringify({ step: "sent", origin: new URL(page.url()).origin }));
  } finally {
    await browser.close();
  }
}

const modes = { label, refuse, latency, restart };
if (!modes[mode]) {
  console.error(`unknown mode '${mode}'; use label, refuse, latency or restart`);
  process.exit(2);
}
modes[mode]().catch((e) => {
  console.error(`the browser run (${mode}) failed: ${e.message}`);
  process.exit(1);
});
