// The index page's live panel: a ticker and a game tab open elsewhere show up
// as one connection each, with their messages per second, read from the
// server's metrics (/stats.json).
import { base, check, newPage, run, screenshot } from "./lib.mjs";

await run(async (browser) => {
  const index = await newPage(browser);
  await index.goto(`${base}/`);
  const ticker = await newPage(browser);
  await ticker.goto(`${base}/ticker/`);
  await ticker.waitForSelector('#status[data-state="online"]');
  const game = await newPage(browser);
  await game.goto(`${base}/game/`);
  await game.waitForSelector('#status[data-state="online"]');

  for (const demo of ["ticker", "game"]) {
    // The ticker streams quotes (~20 a second); the game, with nobody playing,
    // its whole state once a second.
    await index
      .waitForFunction(
        (demo) => {
          const row = document.querySelector(`#stats tr[data-demo="${demo}"]`);
          return row.querySelector(".connections").textContent === "1" && Number(row.dataset.rate) > 0;
        },
        demo,
      )
      .catch(async (error) => {
        const rows = await index.$$eval("#stats tbody tr", (rows) =>
          rows.map((row) => `${row.dataset.demo}: ${row.textContent.trim()} (rate ${row.dataset.rate})`),
        );
        throw new Error(`${error.message}\npanel: ${rows.join("; ")}`);
      });
  }
  const chat = await index.$eval('#stats tr[data-demo="chat"] .connections', (e) => e.textContent);
  check(chat === "0", `the chat shows ${chat} connections with nobody in it`);
  await index.locator("#stats").scrollIntoViewIfNeeded();
  await screenshot(index, "index-stats");

  await ticker.context().close();
  await index.waitForFunction(
    () => document.querySelector('#stats tr[data-demo="ticker"] .connections').textContent === "0",
  );
});
