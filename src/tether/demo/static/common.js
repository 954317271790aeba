// What every demo page shares: a query shortcut and the connection-status pill.

export const $ = (selector) => document.querySelector(selector);

export function setStatus(kind, text) {
  const status = $("#status");
  status.className = `pill ${kind}`;
  status.dataset.state = kind;
  status.textContent = text;
}
