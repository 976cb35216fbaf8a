// What the e2e scripts share: headless Chromium (CHROMIUM, Debian's by
// default) and a page that records every page and console error.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

export const url = process.env.ACCELHUB_URL;
export const shots = process.env.SCREENSHOTS || "screenshots";

// The browser, a page on it, and the list its errors go to.
export async function open() {
  mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const problems = [];
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  page.setDefaultTimeout(15000);
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  return { browser, page, problems };
}
