// The chat demo in Chromium: two users in one room, a third elsewhere, a
// server restart mid-conversation, and the input limits.
import { base, check, control, newPage, run, screenshot, timeout } from "./lib.mjs";

async function join(browser, nick, room, { slowClient = false } = {}) {
  const page = await newPage(browser);
  if (slowClient) {
    // The page loads socket.io-client with a top-level await, which the load
    // event does not wait for. Held back here, as on a slow network: until it
    // arrives the join button must be disabled (a click would submit the form
    // as a plain GET and never connect).
    let release = null;
    const held = new Promise((resolve) => (release = resolve));
    await page.route("**/vendor/socket.io.esm.min.js", async (route) => {
      await held;
      await route.continue();
    });
    await page.goto(`${base}/chat/`, { waitUntil: "domcontentloaded" });
    check(await page.isDisabled("#join-button"), "the join button is enabled before the client is loaded");
    // Typed meanwhile, as a quick user would: it must still be there once the
    // page is ready (the fill below then finds it and types it again).
    await page.fill("#nick", nick);
    release();
    await page.waitForSelector("#join-button:enabled");
    check((await page.inputValue("#nick")) === nick, "what was typed before the client loaded is lost");
  } else {
    await page.goto(`${base}/chat/`);
  }
  await page.fill("#nick", nick);
  await page.selectOption("#room-select", room);
  await page.click("#join-button");
  await page.waitForSelector('#status[data-state="online"]');
  await page.waitForSelector(`#members li[data-nick="${nick}"]`);
  return page;
}

async function say(page, text) {
  await page.fill("#message-input", text);
  await page.click("#send-button");
}

/** How many times a message text is on the page. */
function count(page, text) {
  return page.evaluate(
    (text) => [...document.querySelectorAll("#messages .msg .text")].filter((e) => e.textContent === text).length,
    text,
  );
}

async function waitForMessage(page, text, status = null) {
  const selector = status ? `.msg[data-status="${status}"]` : ".msg";
  await page.waitForFunction(
    ([selector, text]) => [...document.querySelectorAll(`#messages ${selector} .text`)].some((e) => e.textContent === text),
    [selector, text],
  );
}

await run(async (browser) => {
  const step = (name) => console.log(`step: ${name}`);
  const alice = await join(browser, "alice", "general", { slowClient: true });
  const bob = await join(browser, "bob", "general");
  const carol = await join(browser, "carol", "music");

  // Presence: each sees the other.
  await alice.waitForSelector('#members li[data-nick="bob"]');
  await bob.waitForSelector('#members li[data-nick="alice"]');
  await alice.waitForFunction(() => document.querySelector("#messages").textContent.includes("bob joined"));

  // Carol talks in another room first: if it leaked, it would reach alice
  // and bob before anything sent after it.
  await say(carol, "only for music lovers");
  await waitForMessage(carol, "only for music lovers", "delivered");

  // Typing indicator.
  await alice.fill("#message-input", "typing...");
  await bob.waitForFunction(() => document.querySelector("#typing").textContent.includes("alice is typing"));

  // Messages both ways, with delivered ticks.
  await say(alice, "hello bob");
  await waitForMessage(bob, "hello bob");
  await waitForMessage(alice, "hello bob", "delivered");
  await say(bob, "hi alice, how are you?");
  await waitForMessage(alice, "hi alice, how are you?");
  await waitForMessage(bob, "hi alice, how are you?", "delivered");

  for (const page of [alice, bob]) check((await count(page, "only for music lovers")) === 0, "carol's room leaked");
  check((await count(carol, "hello bob")) === 0, "carol got a message of another room");
  check((await carol.$$("#members li")).length === 1, "carol sees people of another room");

  // A late joiner gets the room's history.
  const dave = await join(browser, "dave", "general");
  await waitForMessage(dave, "hello bob");
  await waitForMessage(dave, "hi alice, how are you?");
  await dave.context().close();

  step("restart");
  // The server dies; alice writes while it is down; it comes back.
  await control("kill");
  await alice.waitForSelector('#status[data-state="connecting"]');
  await bob.waitForSelector('#status[data-state="connecting"]');
  const meanwhile = "sent while the server was down";
  await say(alice, meanwhile);
  await waitForMessage(alice, meanwhile, "pending");
  await screenshot(alice, "chat-reconnecting");
  step("start");
  await control("start");

  await alice.waitForSelector('#status[data-state="online"]', { timeout: timeout(20) });
  await bob.waitForSelector('#status[data-state="online"]', { timeout: timeout(20) });
  await waitForMessage(alice, meanwhile, "delivered");
  await waitForMessage(bob, meanwhile);
  // The conversation goes on; by the time this arrives, any duplicate would have too.
  await say(bob, "welcome back");
  await waitForMessage(alice, "welcome back");
  await say(alice, "thanks!");
  await waitForMessage(bob, "thanks!");
  for (const page of [alice, bob]) {
    check((await count(page, meanwhile)) === 1, "the message sent meanwhile did not arrive exactly once");
    check((await count(page, "hello bob")) === 1, "a message shows twice after the restart");
  }
  await bob.waitForSelector('#members li[data-nick="alice"]');
  await bob.fill("#message-input", "");
  await screenshot(bob, "chat");

  step("limits");
  // Limits, with a visible error: too long (checked in the page) ...
  await carol.fill("#message-input", "x".repeat(501));
  await carol.click("#send-button");
  await carol.waitForFunction(() => document.querySelector("#composer-error").textContent.includes("at most 500"));
  // ... and too fast (checked by the server).
  await carol.evaluate(() => {
    for (let i = 0; i < 8; i++) {
      document.querySelector("#message-input").value = `burst ${i}`;
      document.querySelector("#send-button").click();
    }
  });
  await carol.waitForSelector('.msg[data-status="failed"]');
  await carol.waitForFunction(() => document.querySelector("#composer-error").textContent.includes("Slow down"));
  await screenshot(carol, "chat-limits");
});
