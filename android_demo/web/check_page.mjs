// Drive the page in headless Chromium: classify texts through it and save a screenshot.
//
//   node check_page.mjs URL TEXTS.json OUT.json SCREENSHOT.png
//
// URL is where `edgeft serve-web BUNDLE` serves the page; TEXTS.json is a JSON list of strings.
// OUT.json gets {browser, results (one per text, as the page's classify returns), ui (what the
// page shows after typing the first text and pressing Classify), bench, requests (every URL the
// page asked for), errors}. Exit code 1 with a message on stderr when the page cannot load.
//
// Uses Debian's /usr/bin/chromium (or $CHROMIUM) through playwright-core: no browser download.
// Any request that leaves the page's origin is recorded and aborted, so a page that needed the
// network would fail here rather than quietly fetch from a CDN.

import fs from "node:fs";
import { chromium } from "playwright-core";

const [url, textsPath, outPath, screenshotPath] = process.argv.slice(2);
if (!screenshotPath) {
  console.error("usage: node check_page.mjs URL TEXTS.json OUT.json SCREENSHOT.png");
  process.exit(2);
}
const texts = JSON.parse(fs.readFileSync(textsPath, "utf8"));
const TIMEOUT = 60_000; // ms for the page to load the bundle (the 14 MB WASM compiles in ~1 s here)

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. The rest keeps the
  // browser from reaching out on its own (updates, sync, QUIC probes); playwright gives it a fresh profile.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const report = { browser: browser.version(), requests: [], offsite: [], errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  const origin = new URL(url).origin;
  await page.route("**/*", (route) => {
    const target = route.request().url();
    if (new URL(target).origin === origin) return route.continue();
    report.offsite.push(target);
    return route.abort();
  });
  page.on("request", (r) => report.requests.push(r.url()));
  page.on("pageerror", (e) => report.errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") report.errors.push(`console: ${m.text()}`); });

  await page.goto(url);
  await page.waitForSelector("body[data-state=ready], body[data-state=error]", { timeout: TIMEOUT });
  report.status = await page.textContent("#status");
  if (await page.getAttribute("body", "data-state") !== "ready") throw new Error(`the page failed: ${report.status}`);

  report.results = await page.evaluate((t) => window.edgeft.classifyAll(t), texts);
  report.bench = await page.evaluate((t) => window.edgeft.benchmark(t, 20), texts[0]);

  // The real UI path, for the screenshot: type, click, read what is shown.
  await page.fill("#text", texts[0]);
  await page.click("#classify");
  await page.waitForSelector("#result:not([hidden])");
  await page.click("#bench");
  await page.waitForFunction(() => document.getElementById("bench-result").textContent.includes("p50"));
  report.ui = { label: await page.textContent("#label"), score: await page.textContent("#score"),
                bench: await page.textContent("#bench-result") };
  await page.screenshot({ path: screenshotPath, fullPage: true });
} catch (e) {
  report.failure = e.message;
} finally {
  await browser.close();
  fs.writeFileSync(outPath, JSON.stringify(report, null, 1));
}
if (report.failure) {
  console.error(`check_page: ${report.failure}\n${report.errors.join("\n")}`);
  process.exit(1);
}
