// Charts of the pages, drawn by uPlot (vendored from npm: static/vendor/uplot). A page describes each
// chart in its page data; this module draws it into <div class="chart" data-chart="NAME">.
import { el, fmt, pageData } from "./common.js";

const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#bf3989", "#1b7c83", "#57606a"];

function formatter(kind) {
  if (kind === "pct") return (v) => (v === null || v === undefined ? "—" : fmt.pct(v, 1));
  if (kind === "usd") return (v) => fmt.usd(v);
  if (kind === "seconds") return (v) => (v === null || v === undefined ? "—" : `${v.toFixed(2)} s`);
  if (kind === "int") return (v) => fmt.int(v);
  return (v) => (v === null || v === undefined ? "—" : String(Math.round(v * 1000) / 1000));
}

/**
 * spec: {title, x: [...], x_kind: "time" | "number" | "count", x_label, y_kind: "pct" | "usd" | ..., y_range: [lo, hi],
 *        series: [{label, values: [...], low?: [...], high?: [...], dashed?: bool}], link?: path}
 * onPoint(index, seriesIndex) is called when a point is clicked.
 */
export function drawChart(container, spec, onPoint) {
  const uPlot = window.uPlot;
  if (!uPlot) { container.replaceChildren(el("p", { class: "note", text: "charts could not load" })); return null; }
  const data = [spec.x];
  const series = [{ label: spec.x_label || "x", value: spec.x_kind === "time" ? (u, v) => fmt.time(v) : undefined }];
  const bands = [];
  const bandSeries = [];
  const yFormat = formatter(spec.y_kind);
  spec.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    data.push(s.values);
    const main = data.length - 1;
    series.push({ label: s.label, stroke: color, width: 2, dash: s.dashed ? [6, 4] : undefined,
                  points: { show: true, size: 6, fill: color }, value: (u, v) => yFormat(v), spanGaps: false });
    if (s.low && s.high) {
      data.push(s.high); series.push({ label: `${s.label} high`, stroke: "transparent", points: { show: false }, value: (u, v) => yFormat(v) });
      const hi = data.length - 1;
      data.push(s.low); series.push({ label: `${s.label} low`, stroke: "transparent", points: { show: false }, value: (u, v) => yFormat(v) });
      const lo = data.length - 1;
      bands.push({ series: [hi, lo], fill: `${color}26` });
      bandSeries.push(hi, lo);
    }
    void main;
  });
  const width = Math.max(320, container.clientWidth || 600);
  const options = {
    title: spec.title, width, height: spec.height || 240, series, bands,
    // Times in UTC, as the pages' tables print them.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
    // One point alone gets an hour either side, not an axis spanning years.
    scales: { x: { time: spec.x_kind === "time", range: (u, lo, hi) => (lo === hi ? [lo - 3600, hi + 3600] : [lo, hi]) },
              y: spec.y_range ? { range: spec.y_range } : {} },
    axes: [
      { label: spec.x_label, stroke: "#8d96a0", grid: { stroke: "#8d96a022" },
        // Counts (k trials) tick at whole numbers only.
        incrs: spec.x_kind === "count" ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] : undefined },
      { values: (u, ticks) => ticks.map(yFormat), stroke: "#8d96a0", grid: { stroke: "#8d96a022" }, size: 60 },
    ],
    legend: { live: true },
    cursor: { points: { size: 8 } },
  };
  container.replaceChildren();
  const plot = new uPlot(options, data, container);
  // The interval bounds are drawn as bands; their own legend entries would only repeat them.
  const entries = plot.root.querySelectorAll(".u-legend .u-series");
  bandSeries.forEach((i) => entries[i] && entries[i].classList.add("band-bound"));
  if (onPoint) {
    plot.over.classList.add("clickable");
    plot.over.addEventListener("click", () => {
      const idx = plot.cursor.idx;
      if (idx !== null && idx !== undefined) onPoint(idx);
    });
  }
  new ResizeObserver(() => plot.setSize({ width: Math.max(320, container.clientWidth), height: spec.height || 240 }))
    .observe(container);
  return plot;
}

/** A click handler opening the clicked point's window: spec.link (a path of this app the server built,
 * never another origin) with the point's x as ``at``. */
function pointOpener(spec) {
  return (idx) => {
    const x = spec.x[idx];
    if (typeof spec.link !== "string" || !spec.link.startsWith("/") || spec.link.startsWith("//")) return;
    if (typeof x !== "number") return;
    window.location.assign(`${spec.link}${spec.link.includes("?") ? "&" : "?"}at=${encodeURIComponent(String(x))}`);
  };
}

/** Every <div class="chart" data-chart="NAME"> of the page, from pageData().charts[NAME]. A chart whose
 * spec has a link opens the clicked point's window. */
export function drawPageCharts(handlers = {}) {
  const data = pageData("chart-data");
  if (!data) return;
  for (const container of document.querySelectorAll(".chart[data-chart]")) {
    const spec = data[container.dataset.chart];
    if (!spec) continue;
    const onPoint = handlers[container.dataset.chart] || (spec.link ? pointOpener(spec) : undefined);
    drawChart(container, spec, onPoint);
  }
}
