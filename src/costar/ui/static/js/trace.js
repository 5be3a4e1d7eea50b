// The Trace page's span tree and timeline: a virtualized list over rows paged from
// /api/v1/traces/{id}/tree, so only the rows on screen exist in the page and only their spans are read
// from the store. A span opened shows whole in the side pane (/api/v1/traces/{id}/spans/{span}).
import { asText, boundedText, el, fmt, getJSON } from "./common.js";

const ROW = 24;          // px per row: fixed, so row N sits at N * ROW
const PAGE = 200;        // rows per request
const OVERSCAN = 20;     // rows rendered above and below the screen
const MAX_PAGES = 60;    // pages kept in memory (12,000 rows)

const root = document.getElementById("trace-view");
if (root) start(root);

function start(root) {
  const traceId = root.dataset.trace;
  const base = `/api/v1/traces/${encodeURIComponent(traceId)}`;
  const viewport = document.getElementById("tree-viewport");
  const spacer = document.getElementById("tree-spacer");
  const rowsBox = document.getElementById("tree-rows");
  const status = document.getElementById("tree-status");
  const pane = document.getElementById("span-pane");

  const state = {
    collapsed: new Set(),
    pages: new Map(),        // page number -> rows
    pending: new Map(),      // page number -> promise
    generation: 0,           // bumped when collapsing changes what the rows are
    visible: Number(root.dataset.total) || 0,
    t0: 0, t1: 1,
    selected: null,
    pool: [],
    frame: 0,
  };
  root.classList.add("live");

  function collapsedParam() {
    return state.collapsed.size ? `&collapsed=${[...state.collapsed].map(encodeURIComponent).join(",")}` : "";
  }

  function fetchPage(n) {
    if (state.pages.has(n) || state.pending.has(n)) return;
    const generation = state.generation;
    const promise = getJSON(`${base}/tree?offset=${n * PAGE}&limit=${PAGE}${collapsedParam()}`)
      .then((page) => {
        state.pending.delete(n);
        if (generation !== state.generation) return;
        state.pages.set(n, page.rows);
        if (state.pages.size > MAX_PAGES) state.pages.delete(state.pages.keys().next().value);
        state.t0 = page.start_ns; state.t1 = Math.max(page.end_ns, page.start_ns + 1);
        if (page.visible !== state.visible) { state.visible = page.visible; sizeSpacer(); }
        schedule();
      })
      .catch((error) => { state.pending.delete(n); status.textContent = `could not load spans: ${error.message}`; });
    state.pending.set(n, promise);
    return promise;
  }

  function sizeSpacer() {
    spacer.style.height = `${state.visible * ROW}px`;
    status.textContent = `${fmt.int(state.visible)} of ${fmt.int(Number(root.dataset.total))} spans shown`;
  }

  function rowAt(i) {
    const page = state.pages.get(Math.floor(i / PAGE));
    return page ? page[i - Math.floor(i / PAGE) * PAGE] : undefined;
  }

  function makeRow() {
    const toggle = el("button", { type: "button", class: "toggle", tabindex: "-1", "aria-label": "expand or collapse" });
    const kind = el("span", { class: "kind" });
    const name = el("span", { class: "name" });
    const info = el("span", { class: "info" });
    const label = el("span", { class: "label" }, toggle, kind, name, info);
    const bar = el("span", { class: "bar" });
    const dur = el("span", { class: "dur" });
    const timeline = el("span", { class: "timeline" }, bar, dur);
    const node = el("div", { class: "row", role: "treeitem" }, label, timeline);
    node.addEventListener("click", (event) => {
      const row = node._row;
      if (!row) return;
      if (event.target === toggle) { toggleRow(row); return; }
      select(row.span_id, row.index);
    });
    return { node, toggle, kind, name, info, bar, dur };
  }

  function paint(slot, row, index) {
    slot.node.style.transform = `translateY(${index * ROW}px)`;
    slot.node._row = row;
    if (!row) {
      slot.node.className = "row loading";
      slot.toggle.textContent = ""; slot.kind.textContent = ""; slot.kind.className = "kind";
      slot.name.textContent = "…"; slot.info.textContent = ""; slot.dur.textContent = "";
      slot.bar.style.width = "0";
      return;
    }
    const error = row.status === "ERROR";
    slot.node.className = `row${error ? " err" : ""}${row.span_id === state.selected ? " selected" : ""}`;
    slot.node.dataset.span = row.span_id;
    slot.node.setAttribute("aria-level", String(row.depth + 1));
    slot.node.querySelector(".label").style.paddingLeft = `${Math.min(row.depth, 60) * 14}px`;
    slot.toggle.textContent = row.children ? (state.collapsed.has(row.span_id) ? "▸" : "▾") : "";
    slot.toggle.disabled = !row.children;
    slot.kind.textContent = row.kind;
    slot.kind.className = `kind kind-${row.kind.toLowerCase()}`;
    slot.name.textContent = row.name;
    const bits = [];
    if (row.model) bits.push(row.model);
    if (row.tool && row.kind !== "TOOL") bits.push(row.tool);
    if (row.input_tokens !== null || row.output_tokens !== null) bits.push(`${fmt.int((row.input_tokens || 0) + (row.output_tokens || 0))} tok`);
    if (row.cost_usd !== null) bits.push(fmt.usd(row.cost_usd));
    if (row.children && state.collapsed.has(row.span_id)) bits.push(`+${fmt.int(row.descendants)}`);
    if (row.orphan) bits.push("orphan");
    slot.info.textContent = bits.join(" · ");
    const span = state.t1 - state.t0;
    const end = row.end_ns === null ? row.start_ns : row.end_ns;
    const left = Math.max(0, Math.min(1, (row.start_ns - state.t0) / span));
    const width = Math.max(0.002, Math.min(1 - left, (end - row.start_ns) / span));
    slot.bar.style.left = `${(left * 100).toFixed(3)}%`;
    slot.bar.style.width = `${(width * 100).toFixed(3)}%`;
    slot.dur.textContent = row.end_ns === null ? "open" : fmt.ms(end - row.start_ns);
  }

  function render() {
    state.frame = 0;
    const top = viewport.scrollTop;
    const height = viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(state.visible, Math.ceil((top + height) / ROW) + OVERSCAN);
    const firstPage = Math.floor(first / PAGE), lastPage = Math.floor(Math.max(first, last - 1) / PAGE);
    for (let p = firstPage; p <= lastPage; p++) fetchPage(p);
    // One page ahead either way, so a scroll finds its rows already here.
    if ((lastPage + 1) * PAGE < state.visible) fetchPage(lastPage + 1);
    if (firstPage > 0) fetchPage(firstPage - 1);
    const count = Math.max(0, last - first);
    while (state.pool.length < count) { const slot = makeRow(); state.pool.push(slot); rowsBox.append(slot.node); }
    for (let k = 0; k < state.pool.length; k++) {
      const slot = state.pool[k];
      if (k >= count) { slot.node.hidden = true; continue; }
      slot.node.hidden = false;
      paint(slot, rowAt(first + k), first + k);
    }
  }

  function schedule() { if (!state.frame) state.frame = requestAnimationFrame(render); }

  function reset() {
    state.generation += 1;
    state.pages.clear();
    state.pending.clear();
    schedule();
  }

  function toggleRow(row) {
    if (!row.children) return;
    if (state.collapsed.has(row.span_id)) state.collapsed.delete(row.span_id); else state.collapsed.add(row.span_id);
    reset();
  }

  async function locate(spanId) {
    const where = await getJSON(`${base}/tree/locate?span_id=${encodeURIComponent(spanId)}${collapsedParam()}`);
    let changed = false;
    for (const id of where.ancestors) if (state.collapsed.delete(id)) changed = true;
    if (changed) reset();
    return where.index;
  }

  async function select(spanId, index) {
    state.selected = spanId;
    const url = new URL(window.location.href);
    url.searchParams.set("span", spanId);
    url.hash = "tree";
    window.history.replaceState(null, "", url);
    if (index === undefined) {
      try { index = await locate(spanId); } catch (error) { showError(`span ${spanId}: ${error.message}`); return; }
    }
    const top = viewport.scrollTop, height = viewport.clientHeight || 600;
    if (index * ROW < top || (index + 1) * ROW > top + height) viewport.scrollTop = Math.max(0, index * ROW - height / 3);
    schedule();
    try {
      const span = await getJSON(`${base}/spans/${encodeURIComponent(spanId)}`);
      if (state.selected === spanId) showSpan(span);
    } catch (error) { showError(`span ${spanId}: ${error.message}`); }
  }

  function showError(message) { pane.replaceChildren(el("p", { class: "error", role: "alert", text: message })); }

  function showSpan(span) {
    const a = span.attributes || {};
    const duration = span.end_ns === null ? "still open" : fmt.ms(span.end_ns - span.start_ns);
    const parts = [
      el("h3", { class: "span-title", text: span.name }),
      el("p", { class: "meta" },
        el("span", { class: `kind kind-${span.kind.toLowerCase()}`, text: span.kind }), " · ",
        el("span", { class: span.status.code === "ERROR" ? "st-fail" : "", text: span.status.code }),
        ` · ${duration} · starts +${fmt.ms(span.start_ns - state.t0)} · `, el("code", { text: span.span_id })),
    ];
    if (span.status.message) parts.push(el("h4", { text: "error" }), boundedText(span.status.message));
    const facts = [];
    const model = a["gen_ai.response.model"] || a["gen_ai.request.model"];
    if (model) facts.push(["model", String(model)]);
    if (a["gen_ai.usage.input_tokens"] !== undefined) facts.push(["input tokens", fmt.int(Number(a["gen_ai.usage.input_tokens"]))]);
    if (a["gen_ai.usage.output_tokens"] !== undefined) facts.push(["output tokens", fmt.int(Number(a["gen_ai.usage.output_tokens"]))]);
    if (a["costar.usage.cost_usd"] !== undefined) facts.push(["cost", fmt.usd(Number(a["costar.usage.cost_usd"]))]);
    if (a["gen_ai.tool.name"] !== undefined) facts.push(["tool", String(a["gen_ai.tool.name"])]);
    if (a["gen_ai.tool.call.id"] !== undefined) facts.push(["call id", String(a["gen_ai.tool.call.id"])]);
    if (facts.length) parts.push(el("table", { class: "kv" }, facts.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v })))));
    if (a["gen_ai.system_instructions"] !== undefined) parts.push(el("h4", { text: "system instructions" }), boundedText(asText(a["gen_ai.system_instructions"])));
    if (Array.isArray(a["gen_ai.input.messages"])) parts.push(el("h4", { text: "input messages" }), messages(a["gen_ai.input.messages"]));
    if (Array.isArray(a["gen_ai.output.messages"])) parts.push(el("h4", { text: "output messages" }), messages(a["gen_ai.output.messages"]));
    if (a["gen_ai.tool.call.arguments"] !== undefined) parts.push(el("h4", { text: "arguments" }), boundedText(asText(a["gen_ai.tool.call.arguments"])));
    if (a["gen_ai.tool.call.result"] !== undefined) parts.push(el("h4", { text: "result" }), boundedText(asText(a["gen_ai.tool.call.result"])));
    for (const key of ["input.value", "output.value"]) if (a[key] !== undefined) parts.push(el("h4", { text: key }), boundedText(asText(a[key])));
    if (span.events && span.events.length) {
      parts.push(el("h4", { text: `events (${span.events.length})` }));
      for (const event of span.events.slice(0, 200)) {
        parts.push(el("details", { class: event.name === "exception" ? "event err" : "event", open: event.name === "exception" },
          el("summary", { text: `${event.name} · +${fmt.ms(event.time_ns - span.start_ns)}` }),
          boundedText(asText(event.attributes))));
      }
    }
    const keys = Object.keys(a).sort();
    parts.push(el("details", { class: "attributes" }, el("summary", { text: `all attributes (${keys.length})` }),
      el("table", { class: "kv" }, keys.map((k) => el("tr", {}, el("td", { text: k }), el("td", {}, boundedText(asText(a[k]), 4000)))))));
    parts.push(el("p", {}, el("a", { href: `${base}/spans/${encodeURIComponent(span.span_id)}`, text: "this span as JSON" })));
    pane.replaceChildren(...parts);
  }

  function messages(list) {
    return el("div", { class: "conv" }, list.slice(0, 500).map((message) => {
      const role = typeof message.role === "string" ? message.role : "?";
      const body = [el("div", { class: "role", text: role })];
      const parts = Array.isArray(message.parts) ? message.parts : [{ type: "text", content: asText(message.content ?? message) }];
      for (const part of parts.slice(0, 200)) {
        if (part && part.type === "text") body.push(boundedText(asText(part.content ?? "")));
        else if (part && part.type === "tool_call") body.push(el("div", { class: "part-label", text: `tool call ${part.name ?? ""} (${part.id ?? "no id"})` }), boundedText(asText(part.arguments ?? {})));
        else if (part && part.type === "tool_call_response") body.push(el("div", { class: "part-label", text: `tool result (${part.id ?? "no id"})` }), boundedText(asText(part.response ?? part.result ?? "")));
        else body.push(el("div", { class: "part-label", text: String(part && part.type ? part.type : "part") }), boundedText(asText(part)));
      }
      return el("div", { class: `msg role-${role.replace(/[^a-z]/g, "")}` }, body);
    }));
  }

  viewport.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", schedule);
  viewport.addEventListener("keydown", (event) => {
    if (!state.selected) return;
    const current = [...state.pages.values()].flat().find((r) => r.span_id === state.selected);
    if (!current) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const next = rowAt(current.index + (event.key === "ArrowDown" ? 1 : -1));
      if (next) { event.preventDefault(); select(next.span_id, next.index); }
    } else if ((event.key === "ArrowLeft" && !state.collapsed.has(current.span_id)) ||
               (event.key === "ArrowRight" && state.collapsed.has(current.span_id))) {
      event.preventDefault(); toggleRow(current);
    }
  });
  // Evidence links of the verdicts open the span they cite here, without a reload.
  for (const link of document.querySelectorAll("a.evidence[data-span]")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      document.getElementById("tree").scrollIntoView();
      select(link.dataset.span);
    });
  }

  sizeSpacer();
  fetchPage(0);
  schedule();
  if (root.dataset.span) select(root.dataset.span);
}
