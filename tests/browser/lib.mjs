// Shared helpers of the browser tests: Debian's Chromium driven by playwright-core.
//
// Each test script is started by tests/browser/test_demos.py with:
//   DEMO_URL      the demo server's base URL (http://127.0.0.1:PORT)
//   OUTPUT_DIR    where screenshots go
//   TETHER_TEST_TIMEOUT  the suite's timeout unit (tests/helpers.py)
//   CHROMIUM      the browser executable (default /usr/bin/chromium)
// and may ask pytest to act on the demo server by printing "@kill" or
// "@start" on stdout; pytest answers "ok" on stdin once done.
import { createInterface } from "node:readline";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const base = process.env.DEMO_URL;
const unit = Number(process.env.TETHER_TEST_TIMEOUT || "1");

/** n timeout units in milliseconds (the Python suite's timeout(), in ms). */
export function timeout(n = 1) {
  return n * 1000 * unit;
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    // Root in a container: no sandbox. Small shared memory: no /dev/shm.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

/** A fresh browser context (its own storage: a different user) and a page in it. */
export async function newPage(browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(timeout(10));
  page.on("pageerror", (error) => console.error(`page error: ${error.message}`));
  return page;
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(process.env.OUTPUT_DIR, `${name}.png`) });
}

let reader = null;
let lines = null;

/** Ask pytest to do something to the demo server and wait until it is done. */
export async function control(command) {
  if (lines === null) {
    reader = createInterface({ input: process.stdin });
    lines = reader[Symbol.asyncIterator]();
  }
  process.stdout.write(`@${command}\n`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== "ok") throw new Error(`pytest did not ${command} the server: ${value}`);
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Run a test body with a browser; exit non-zero with the error on failure. */
export async function run(body) {
  const browser = await launch();
  try {
    await body(browser);
  } catch (error) {
    console.error(error.stack || String(error));
    process.exitCode = 1;
  } finally {
    await browser.close();
    reader?.close(); // an open stdin would keep Node running
  }
}
