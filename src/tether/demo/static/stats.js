// The index page's live panel: /stats.json (tether/demo/stats.py) read every
// second. It gives counters; messages per second is the difference of two
// readings over the time between them, as Prometheus' rate() computes it.
import { $ } from "/common.js";

const PERIOD = 1000; // ms
let previous = null;

function show(reading) {
  for (const [demo, figures] of Object.entries(reading.demos)) {
    const row = $(`#stats tr[data-demo="${demo}"]`);
    if (!row) continue;
    row.querySelector(".connections").textContent = String(figures.connections);
    const before = previous?.demos[demo];
    if (before) {
      const seconds = reading.time - previous.time;
      const messages = figures.received + figures.sent - (before.received + before.sent);
      const rate = seconds > 0 ? messages / seconds : 0;
      row.querySelector(".rate").textContent = rate.toFixed(rate < 10 ? 1 : 0);
      row.dataset.rate = String(rate);
    }
  }
  previous = reading;
}

async function poll() {
  try {
    const response = await fetch("/stats.json", { cache: "no-store" });
    if (response.ok) show(await response.json());
  } catch {
    // The server is restarting: keep the last figures, try again.
  }
  setTimeout(poll, PERIOD);
}

poll();
