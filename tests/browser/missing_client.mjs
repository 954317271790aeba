// A demo without socket.io-client's browser bundle: the chat page says what
// is missing and how to fix it, instead of an empty "Join" dialog.
import { base, check, newPage, run } from "./lib.mjs";

await run(async (browser) => {
  const page = await newPage(browser);
  await page.goto(`${base}/chat/`);
  await page.waitForSelector("#missing-client", { state: "visible" });
  const text = await page.textContent("#missing-client");
  for (const words of ["/vendor/socket.io.esm.min.js", "socket.io-client", "npm ci"]) {
    check(text.includes(words), `the message does not mention ${words}: ${text}`);
  }
  check(await page.isDisabled("#join-button"), "the join button is enabled");
  check((await page.textContent("#status")) === "Browser client missing", "the status pill says otherwise");
  // The rest of the page still works: the room list is filled in.
  check((await page.$$("#room-select option")).length > 0, "no rooms to pick");
});
