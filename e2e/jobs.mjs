// A job's named outputs in the web console, in headless Chromium: the IP
// page lists what the IP takes and gives; the dashboard lists a finished
// job's outputs, and a click saves one as a file.
//
// Run by crates/cli/tests/it/console.rs against a real `accelhub serve`
// where the user has run an acme/revcomp job: ACCELHUB_URL, USER_TOKEN,
// CHROMIUM, SCREENSHOTS, and EXPECT_STATS (the `stats` output's bytes).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { open, shots, url } from "./browser.mjs";

const { browser, page, problems } = await open();
let step = "start";
try {
  step = "the user signs in";
  await page.goto(url);
  await page.fill("#token", process.env.USER_TOKEN);
  await page.click("#signin button");
  await page.waitForSelector("#nav:not([hidden])");

  step = "the IP page lists its outputs";
  await page.goto(`${url}/#/ip/acme/revcomp`);
  await page.waitForSelector("#io");
  const io = await page.textContent("#io");
  for (const want of ["main output", "sequences", "stats", "records and bases read"]) {
    if (!io.includes(want)) throw new Error(`#io lacks "${want}": ${io}`);
  }

  step = "the dashboard lists the job's outputs";
  await page.goto(`${url}/#/dashboard`);
  await page.waitForSelector("#jobs button.output");
  const names = await page.$$eval("#jobs button.output", (bs) => bs.map((b) => b.textContent));
  if (JSON.stringify(names) !== JSON.stringify(["sequences", "stats"])) {
    throw new Error(`the job's outputs: ${JSON.stringify(names)}`);
  }
  await page.screenshot({ path: join(shots, "6-job-outputs.png"), fullPage: true });

  step = "saves one";
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click("#jobs button.output:text('stats')"),
  ]);
  if (!download.suggestedFilename().endsWith(".stats")) {
    throw new Error(`saved as ${download.suggestedFilename()}`);
  }
  const got = readFileSync(await download.path(), "utf8");
  if (got !== process.env.EXPECT_STATS) throw new Error(`saved ${JSON.stringify(got)}`);

  if (problems.length) throw new Error(problems.join("\n"));
  console.log("jobs e2e: ok");
} catch (e) {
  console.error(`jobs e2e failed while ${step}: ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
