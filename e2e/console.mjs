// The web console end to end in headless Chromium: a user signs in, finds
// an IP by search, tries it, sees the result and the charge, and finds the
// call on their invoice; its vendor then sees the new use and revenue and
// publishes a version from an uploaded package; the operator sees the
// platform's revenue, the fleet and the accounts.
//
// Run by crates/cli/tests/it/console.rs against a real `accelhub serve`:
//   ACCELHUB_URL, USER_TOKEN, VENDOR_TOKEN, ADMIN_TOKEN, PACKAGE (a package
//   archive the vendor uploads), CHROMIUM (the browser binary), SCREENSHOTS
//   (a directory for the screenshots, kept as test artifacts).
import { join } from "node:path";
import { open, shots, url } from "./browser.mjs";

const { browser, page, problems } = await open();
let step = "start";
try {
  const signIn = async (token) => {
    await page.goto(url);
    await page.fill("#token", token);
    await page.click("#signin button");
    await page.waitForSelector("#nav:not([hidden])");
  };
  const expectText = async (selector, text) => {
    const got = await page.textContent(selector);
    if (!got || !got.includes(text)) throw new Error(`${selector}: expected "${text}" in "${got}"`);
  };

  step = "the user signs in";
  await signIn(process.env.USER_TOKEN);
  await page.screenshot({ path: join(shots, "1-market.png"), fullPage: true });

  step = "finds the IP by search";
  await page.fill("#search", "reverse complement");
  await page.click("form button[type=submit]");
  await page.waitForSelector(".ip-card a:text('acme/revcomp')");
  const cards = await page.$$eval(".ip-card h2", (hs) => hs.map((h) => h.textContent));
  if (cards.length !== 1) throw new Error(`the search found ${JSON.stringify(cards)}`);
  await page.click(".ip-card a:text('acme/revcomp')");
  await page.waitForSelector("#try");
  await expectText("main", "Reverse complement");

  step = "tries it";
  await page.fill("#try-input", ">read1\nAACGTTTG\n");
  await page.fill("#try-params", '{"width": 4}');
  await page.click("#try-run");
  await page.waitForSelector("#try-charge");
  await expectText("#try-charge", "charged 0.002000");
  await expectText("#try-output", "CAAA\nCGTT");
  await page.screenshot({ path: join(shots, "2-try-it.png"), fullPage: true });

  step = "rates it";
  await page.selectOption("#review-stars", "5");
  await page.fill("#review-text", "fast and exact");
  await page.click("#reviews form button");
  await page.waitForSelector("#reviews .review");
  await expectText("#reviews", "fast and exact");

  step = "sees the charge on the dashboard";
  await page.goto(`${url}/#/dashboard`);
  await page.waitForSelector("#invoice .invoice-total");
  await expectText("#invoice", "acme/revcomp");
  await expectText("#invoice .invoice-total", "Total 0.002000");
  await page.screenshot({ path: join(shots, "3-dashboard.png"), fullPage: true });

  step = "the vendor sees the use and the revenue";
  await page.click("#signout");
  await signIn(process.env.VENDOR_TOKEN);
  await page.goto(`${url}/#/vendor`);
  await page.waitForSelector("#my-ips td.uses");
  const uses = await page.$eval("#my-ips tr:has(a:text('acme/revcomp')) td.uses", (td) => td.textContent);
  if (uses !== "1") throw new Error(`the vendor portal shows ${uses} uses of acme/revcomp`);
  await expectText("#statement .invoice-total", "Total 0.002000");
  await expectText("#statement", "platform share 20.00%: 0.000400");
  await expectText("#vendor-reviews", "fast and exact");

  step = "the vendor replies to the review";
  await page.fill("#vendor-reviews form input", "thank you, Bob");
  await page.click("#vendor-reviews form button");
  await page.waitForSelector("#vendor-reviews p.muted");
  await expectText("#vendor-reviews", "Your reply: thank you, Bob");
  await page.screenshot({ path: join(shots, "4-vendor.png"), fullPage: true });

  step = "the vendor publishes a new version from an uploaded package";
  await page.setInputFiles("#package", process.env.PACKAGE);
  await page.click("#publish");
  await page.waitForSelector("#publish-result p");
  await expectText("#publish-result", "Published acme/echo@1.1.0: pending");

  step = "the operator sees the platform's revenue, the fleet and the accounts";
  await page.click("#signout");
  await signIn(process.env.ADMIN_TOKEN);
  await page.goto(`${url}/#/operator`);
  await page.waitForSelector("#platform .invoice-total");
  await expectText("#platform .invoice-total", "Total 0.002000");
  await expectText("#platform", "platform share 20.00%: 0.000400");
  await expectText("#fleet", "(up)");
  await expectText("#accounts", "bob");
  await page.screenshot({ path: join(shots, "5-operator.png"), fullPage: true });

  if (problems.length) throw new Error(problems.join("\n"));
  console.log("console e2e: ok");
} catch (e) {
  console.error(`console e2e failed while ${step}: ${e.message}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
