// Shared helpers of the pages' scripts. Everything shown is set with textContent or as an attribute
// value on elements made here: no string ever becomes HTML (the CSP's Trusted Types enforce it).

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** JSON from this app's API (same origin, the session cookie goes along). */
export async function getJSON(url, { signal } = {}) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, signal });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
    throw new Error(detail);
  }
  return response.json();
}

/** The JSON a page carries for its scripts (a <script type="application/json"> block). */
export function pageData(id = "page-data") {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

export const fmt = {
  int: (n) => (n === null || n === undefined ? "—" : Math.round(n).toLocaleString("en-US")),
  pct: (x, digits = 0) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(digits)}%`),
  usd: (x) => (x === null || x === undefined ? "—" : x === 0 ? "$0"
    : `${x < 0 ? "-" : ""}$${Math.abs(x) < 1 ? Math.abs(x).toFixed(4) : Math.abs(x).toFixed(2)}`),
  ms: (ns) => {
    if (ns === null || ns === undefined) return "—";
    const ms = ns / 1e6;
    if (ms < 1) return `${ms.toFixed(2)} ms`;
    if (ms < 1000) return `${ms.toFixed(0)} ms`;
    return `${(ms / 1000).toFixed(2)} s`;
  },
  time: (s) => (s === null || s === undefined ? "—" : new Date(s * 1000).toISOString().slice(0, 16).replace("T", " ")),
};

/** Text bounded for display; the rest is behind a button. */
export function boundedText(text, limit = 20000) {
  const pre = el("pre", { text: text.length > limit ? text.slice(0, limit) : text });
  if (text.length <= limit) return pre;
  const more = el("button", { type: "button", class: "more", text: `show ${fmt.int(text.length - limit)} more characters` });
  more.addEventListener("click", () => { pre.textContent = text; more.remove(); });
  return el("div", {}, pre, more);
}

/** A value as readable text: strings as they are, everything else as indented JSON. */
export function asText(value) {
  if (typeof value === "string") return value;
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}
