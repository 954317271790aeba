// The README's chat page (public/index.html) in Chromium, served by the
// README's chat.py: io is defined, the client joins "lobby" and logs what it
// said, which came back through the server.
import { base, check, newPage, run } from "./lib.mjs";

await run(async (browser) => {
  const page = await newPage(browser);
  const logged = [];
  const problems = [];
  page.on("console", (message) => {
    const where = message.location().url;
    if (message.type() === "log") logged.push(message.text());
    // The README's public/ has no icon: the browser's 404 for it is the user's to fix.
    if (where && new URL(where).pathname === "/favicon.ico") return;
    if (["error", "warning"].includes(message.type())) problems.push(`${message.text()} (${where})`);
  });
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.status()}: ${response.url()}`);
  });
  const said = page.waitForEvent("console", (message) => message.text().endsWith(" hello"));
  await page.goto(`${base}/`);
  await said;
  check(problems.length === 0, `console not clean:\n${problems.join("\n")}`);
  console.log(`page logged: ${logged.join(" | ")}`);
});
