// The arena in Chromium: two players move with the keyboard and see each
// other move; a late joiner gets the current state; picking a gem scores.
import { base, check, newPage, run, screenshot, timeout } from "./lib.mjs";

async function play(browser, name) {
  const page = await newPage(browser, { width: 1280, height: 720 });
  await page.goto(`${base}/game/`);
  await page.waitForSelector('#status[data-state="online"]');
  await page.fill("#name", name);
  await page.click("#play");
  await page.waitForFunction(() => window.game.me !== null);
  return page;
}

const me = (page) => page.evaluate(() => window.game.me);
const seen = (page, id) => page.evaluate((id) => window.game.position(id), id);

/** Hold an arrow key on `mover` until `watcher` sees it move `distance` units along it. */
async function moveAndWatch(mover, watcher, axis, distance = 40) {
  const id = await me(mover);
  const [x, y] = await seen(watcher, id);
  const value = axis === "x" ? x : y;
  const middle = axis === "x" ? 600 : 360;
  const sign = value < middle ? 1 : -1; // towards the middle: no wall in the way
  const key = axis === "x" ? (sign > 0 ? "ArrowRight" : "ArrowLeft") : sign > 0 ? "ArrowDown" : "ArrowUp";
  await mover.keyboard.down(key);
  try {
    await watcher.waitForFunction(
      ([id, index, start, sign, distance]) => {
        const position = window.game.position(id);
        return position && (position[index] - start) * sign >= distance;
      },
      [id, axis === "x" ? 0 : 1, value, sign, distance],
    );
  } finally {
    await mover.keyboard.up(key);
  }
}

await run(async (browser) => {
  const ada = await play(browser, "Ada");
  const grace = await play(browser, "Grace");
  for (const page of [ada, grace]) await page.waitForFunction(() => document.querySelectorAll("#scores li").length === 2);

  await moveAndWatch(ada, grace, "x");
  await moveAndWatch(grace, ada, "y");
  // The interpolated drawing follows too.
  const graceId = await me(grace);
  await ada.waitForFunction((id) => {
    const player = window.game.players.get(id);
    const newest = window.game.position(id);
    return player.drawn && Math.hypot(player.drawn[0] - newest[0], player.drawn[1] - newest[1]) < 1;
  }, graceId);

  // Ada collects a gem: the page steers with synthetic key events until her score is 1.
  await ada.evaluate(() => {
    const keys = { x: ["ArrowLeft", "ArrowRight"], y: ["ArrowUp", "ArrowDown"] };
    const press = (code, type) => window.dispatchEvent(new KeyboardEvent(type, { code }));
    const timer = setInterval(() => {
      const game = window.game;
      const [x, y] = game.position(game.me);
      if (game.players.get(game.me).score > 0) {
        for (const code of [...keys.x, ...keys.y]) press(code, "keyup");
        return clearInterval(timer);
      }
      const [gx, gy] = [...game.gems.values()].sort(
        (a, b) => Math.hypot(a[0] - x, a[1] - y) - Math.hypot(b[0] - x, b[1] - y),
      )[0];
      for (const [axis, delta] of [["x", gx - x], ["y", gy - y]]) {
        const [minus, plus] = keys[axis];
        press(delta < -4 ? minus : plus, delta < -4 || delta > 4 ? "keydown" : "keyup");
        press(delta < -4 ? plus : minus, "keyup");
      }
    }, 50);
  });
  await grace.waitForFunction(
    (id) => document.querySelector(`#scores li[data-id="${id}"] .score`)?.textContent === "1",
    await me(ada),
    { timeout: timeout(15) },
  );

  // A late joiner sees everyone where they are now.
  const late = await play(browser, "Linus");
  await late.waitForFunction(() => document.querySelectorAll("#scores li").length === 3);
  for (const page of [ada, grace]) {
    const id = await me(page);
    const own = await seen(page, id);
    await late.waitForFunction(
      ([id, own]) => {
        const position = window.game.position(id);
        return position && Math.hypot(position[0] - own[0], position[1] - own[1]) < 1;
      },
      [id, own],
    );
  }
  const scores = await late.evaluate(() => [...window.game.players.values()].map((p) => p.score));
  check(scores.includes(1), "the late joiner does not see the score");
  await ada.waitForFunction(() => document.querySelectorAll("#scores li").length === 3);
  await screenshot(ada, "game");
});
