// Opens the gateway's dashboard in Debian's chromium (headless, driven by playwright-core),
// waits for live updates, saves screenshots and prints what the page shows as one JSON line.
//   node dashboard_page.mjs URL USER PASSWORD OUT_DIR [UPDATES]
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";

const [url, username, password, outDir, updatesArg] = process.argv.slice(2);
const updates = Number(updatesArg || 2);
const profile = mkdtempSync(join(outDir, "profile-"));
// Flags that keep a headless root chromium from reaching for hosts it cannot reach.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
  httpCredentials: { username, password },
  viewport: { width: 1280, height: 1100 },
});
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  const failed = [];
  page.on("requestfailed", (request) => failed.push(request.url()));
  page.on("pageerror", (error) => failed.push(String(error)));
  await page.goto(url);
  await page.waitForFunction(
    (n) => Number(document.getElementById("updated").dataset.updates) >= n, updates,
    { timeout: 20000 });
  await page.screenshot({ path: join(outDir, "dashboard-first.png"), fullPage: true });
  const seen = Number(await page.locator("#updated").getAttribute("data-updates"));
  // a live update: the page redraws again without a reload
  await page.waitForFunction(
    (n) => Number(document.getElementById("updated").dataset.updates) > n, seen,
    { timeout: 20000 });
  await page.screenshot({ path: join(outDir, "dashboard.png"), fullPage: true });
  const shown = {};
  for (const id of ["ledger-accepted", "ledger-redeemed", "ledger-unredeemed", "ledger-channels",
                    "purchases", "revenue", "who"]) {
    shown[id] = await page.locator(`#${id}`).textContent();
  }
  shown.health = await page.locator("#health .badge").allTextContents();
  shown.products = await page.locator("#products tbody tr").allTextContents();
  shown.channels = await page.locator("#channels tbody tr").count();
  shown.charts = await page.locator(".uplot").count();
  shown.failed = failed;
  console.log(JSON.stringify(shown));
} finally {
  await browser.close();
}
