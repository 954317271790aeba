// Every demo page loads with a clean console (no failed request, no error, no
// warning) and gets online, and the icon a browser asks for on each page is
// there: a windowed browser requests /favicon.ico by itself (headless Chromium
// does not), and a 404 there is an error in the console.
import { base, check, newPage, run } from "./lib.mjs";

await run(async (browser) => {
  const page = await newPage(browser);
  const problems = [];
  const icons = [];
  page.on("console", (message) => {
    if (["error", "warning"].includes(message.type())) {
      problems.push(`${message.type()}: ${message.text()} (${message.location().url})`);
    }
  });
  page.on("requestfailed", (request) => problems.push(`failed: ${request.url()}`));
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.status()}: ${response.url()}`);
  });
  for (const path of ["/", "/ticker/", "/game/", "/chat/?nick=tour&room=general"]) {
    await page.goto(`${base}${path}`);
    if (path !== "/") {
      if (path.startsWith("/chat/")) await page.click("#join-button");
      await page.waitForSelector('#status[data-state="online"]');
    }
    await page.waitForLoadState("networkidle");
    // The page's <link rel="icon">, else the default a browser asks for.
    const icon = await page.evaluate(async () => {
      const href = document.querySelector('link[rel~="icon"]')?.href || "/favicon.ico";
      const response = await fetch(href);
      return `${response.status} ${response.headers.get("content-type")}`;
    });
    icons.push(icon);
    console.log(`loaded ${path}, icon: ${icon}`);
  }
  check(icons.every((icon) => icon.startsWith("200 image/")), `icons: ${icons.join(", ")}`);
  check(problems.length === 0, `console not clean:\n${problems.join("\n")}`);
});
