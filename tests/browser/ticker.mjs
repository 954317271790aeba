// The live ticker in Chromium: the table updates, quotes stream at the
// advertised rate, and subscription changes take effect.
import { base, check, newPage, run, screenshot } from "./lib.mjs";

// 12 symbols at 20 updates per second would be 240 quotes/s: ask for well
// under half, since a loaded CI machine may lag.
const MIN_RATE = 100;

await run(async (browser) => {
  const page = await newPage(browser);
  await page.goto(`${base}/ticker/`);
  await page.waitForSelector('#status[data-state="online"]');
  await page.waitForFunction(() => document.querySelectorAll("#quotes tbody tr").length === 12);
  check((await page.textContent("#compression")) === "permessage-deflate", "permessage-deflate is off");

  // The table updates: a price cell changes.
  const first = await page.textContent('#quotes tr[data-symbol="ACME"] td.price');
  await page.waitForFunction(
    (first) => document.querySelector('#quotes tr[data-symbol="ACME"] td.price').textContent !== first,
    first,
  );

  // The rate over a whole second.
  await page.waitForFunction((min) => window.ticker.stats.rate >= min, MIN_RATE);
  console.log(`rate: ${await page.evaluate(() => window.ticker.stats.rate)} updates/s`);

  // Unsubscribe ACME: its row goes and no more of its quotes arrive.
  await page.click('.chip[data-symbol="ACME"]');
  await page.waitForSelector('#quotes tr[data-symbol="ACME"]', { state: "detached" });
  const acme = await page.evaluate(() => window.ticker.stats.perSymbol.ACME);
  const bolt = await page.evaluate(() => window.ticker.stats.perSymbol.BOLT);
  // Once BOLT got 20 more quotes (a second of them), ACME would have had some too.
  await page.waitForFunction((bolt) => window.ticker.stats.perSymbol.BOLT >= bolt + 20, bolt);
  check((await page.evaluate(() => window.ticker.stats.perSymbol.ACME)) === acme, "ACME still streams");

  // Subscribe QUAY: its row comes, with a history for its sparkline, and updates.
  await page.click('.chip[data-symbol="QUAY"]');
  await page.waitForSelector('#quotes tr[data-symbol="QUAY"]');
  await page.waitForFunction(() => (window.ticker.stats.perSymbol.QUAY || 0) >= 20);
  check((await page.evaluate(() => window.ticker.history.get("QUAY").length)) > 20, "no history for QUAY");

  await page.click('#quotes tr[data-symbol="NOVA"]');
  await page.waitForFunction(() => document.querySelector("#chart-symbol").textContent === "NOVA");
  await page.waitForFunction(() => window.ticker.history.get("NOVA").length >= 200);
  await screenshot(page, "ticker");
});
