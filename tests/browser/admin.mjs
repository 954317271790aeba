// The official Socket.IO Admin UI (served by the demo at /admin-ui/) against
// tether, in Chromium. Started by tests/browser/test_admin_ui.py with lib.mjs's
// variables and:
//   ADMIN_PASSWORD  the demo's Admin UI password (username "admin")
//   OTHER_URL       optional: a second demo node on the same Redis; the third
//                   client connects there, and the UI (on DEMO_URL) must still
//                   list it, show two servers and disconnect it.
// Three socket.io-client clients join the chat in three rooms; the script logs
// in through the UI's form, finds their sockets and rooms, sees a live event,
// and disconnects one from the UI, which that client must see.
import { io } from "socket.io-client";
import { base, check, newPage, run, screenshot, timeout } from "./lib.mjs";

const other = process.env.OTHER_URL || "";
const password = process.env.ADMIN_PASSWORD;

function until(emitter, event, predicate = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within the timeout`)), timeout(10));
    const listener = (...args) => {
      if (!predicate(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    };
    emitter.on(event, listener);
  });
}

async function chatClient(url, nick, room) {
  const socket = io(`${url}/chat`, { auth: { nick, room }, reconnection: false, transports: ["websocket"] });
  socket.reasons = [];
  socket.on("disconnect", (reason) => socket.reasons.push(reason));
  await until(socket, "welcome");
  return socket;
}

async function logIn(page) {
  await page.goto(`${base}/admin-ui/`);
  await page.getByLabel("Server URL").fill(base);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Connect" }).click();
  // The form closes once the admin namespace accepted the credentials.
  await page.getByLabel("Server URL").waitFor({ state: "hidden" });
}

async function selectNamespace(page, name) {
  await page.locator(".selector").first().click();
  await page.getByRole("option", { name }).click();
}

await run(async (browser) => {
  const clients = {
    ann: await chatClient(base, "ann", "general"),
    bob: await chatClient(base, "bob", "engineering"),
    cid: await chatClient(other || base, "cid", "music"),
  };
  try {
    const page = await newPage(browser);
    await logIn(page);

    // Every client's socket, with its room.
    await page.goto(`${base}/admin-ui/#/sockets/`);
    await selectNamespace(page, "/chat");
    for (const socket of Object.values(clients)) {
      await page.getByText(socket.id).waitFor();
    }
    await page.goto(`${base}/admin-ui/#/rooms/`);
    for (const room of ["general", "engineering", "music"]) {
      await page.getByRole("cell", { name: room, exact: true }).waitFor();
    }
    await screenshot(page, other ? "admin-ui-two-nodes-rooms" : "admin-ui-rooms");
    if (other) {
      // Both nodes report their stats.
      await page.goto(`${base}/admin-ui/#/servers/`);
      await page.locator("tbody tr").nth(1).waitFor();
      check((await page.locator("tbody tr").count()) === 2, "two servers listed");
    }

    // A live event, sent by a client of the other node when there is one.
    await page.goto(`${base}/admin-ui/#/events/`);
    const sender = other ? clients.cid : clients.bob;
    const reply = await sender.timeout(timeout(5)).emitWithAck("message", { id: "admin-ui-1", text: "seen live" });
    check(reply.ok === true, `the chat took the message: ${JSON.stringify(reply)}`);
    const event = page.locator("tr", { hasText: sender.id }).filter({ hasText: "Event received" });
    await event.locator("code", { hasText: /^message$/ }).waitFor();
    await event.locator("button").last().click(); // unfold: the event's arguments
    await page.getByText("seen live").first().waitFor();
    await screenshot(page, other ? "admin-ui-two-nodes-events" : "admin-ui-events");

    // Disconnect cid from the UI: its client is told by the server.
    await page.goto(`${base}/admin-ui/#/sockets/`);
    const row = page.locator("tr", { hasText: clients.cid.id });
    const gone = until(clients.cid, "disconnect");
    await row.locator("button:has(.mdi-logout)").click();
    const [reason] = await gone;
    check(reason === "io server disconnect", `cid saw "${reason}"`);
    // ...and the UI drops it from the list.
    await page.goto(`${base}/admin-ui/#/sockets/`);
    await page.getByText(clients.ann.id).waitFor();
    await page.waitForFunction((id) => !document.body.innerText.includes(id), clients.cid.id);
    check(clients.ann.connected && clients.bob.connected, "the others stay connected");
    await screenshot(page, other ? "admin-ui-two-nodes" : "admin-ui");
    console.log(`ok: ${Object.keys(clients).length} sockets, rooms, a live event, a disconnect`);
  } finally {
    for (const socket of Object.values(clients)) socket.disconnect();
  }
});
