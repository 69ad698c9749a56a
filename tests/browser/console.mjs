// Drives the owner's console of a running node in Debian's Chromium (headless), for
// cli/tests/it/console.rs. Usage: node console.mjs URL TOKEN OUTDIR
//
// Opens URL/console#token=TOKEN, reads the per-class progress, the learning curve and the
// annotators table, moves the selection to the first flagged annotator with j, presses b and
// then y, waits until the table no longer lists it, saves OUTDIR/console.png and prints
// {"classes":[[label,count],...],"curve":[...],"coverage":"...","flagged":{key,flag},
//  "banned":"...","message":"..."}.
// A failure exits non-zero with a sentence on stderr.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const [url, token, outdir] = process.argv.slice(2);
if (!url || !token || !outdir) {
  console.error("usage: node console.mjs URL TOKEN OUTDIR");
  process.exit(2);
}
fs.mkdirSync(outdir, { recursive: true });
const HANG = 60_000;

const profile = fs.mkdtempSync(path.join(outdir, "profile-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1100, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(HANG);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${url}/console#token=${token}`);
  await page.waitForSelector("body[data-ready=true]");
  const classes = await page.$$eval("#classes tbody tr", (rows) =>
    rows.map((r) => [r.cells[0].textContent, Number(r.cells[1].textContent)]));
  const curve = await page.$$eval("#curve-points li", (items) => items.map((i) => i.textContent));
  const coverage = await page.textContent("#coverage");
  const annotators = await page.$$eval("#annotators tbody tr", (rows) =>
    rows.map((r) => ({ key: r.dataset.key, flagged: r.classList.contains("flagged"), flag: r.cells[4].textContent })));
  const index = annotators.findIndex((a) => a.flagged);
  if (index < 0) throw new Error("no annotator is flagged on the console: " + JSON.stringify(annotators));
  for (let i = 0; i < index; i++) await page.keyboard.press("j");
  const selected = await page.getAttribute("#annotators tbody tr.selected", "data-key");
  if (selected !== annotators[index].key) throw new Error(`j selected ${selected}, not the flagged ${annotators[index].key}`);
  await page.keyboard.press("b");
  await page.waitForSelector("#confirm:not([hidden])");
  await page.keyboard.press("y");
  const gone = annotators[index].key;
  await page.waitForFunction((key) => !document.querySelector(`#annotators tr[data-key="${key}"]`), gone);
  const message = await page.textContent("#message");
  await page.screenshot({ path: path.join(outdir, "console.png"), fullPage: true });
  if (errors.length) throw new Error("page errors: " + errors.join("; "));
  console.log(JSON.stringify({ classes, curve, coverage, flagged: annotators[index], banned: gone, message }));
} catch (e) {
  console.error(e.message || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
