// The router dashboard: reads /v1/stats, /v1/thresholds and /v1/routing-logs every few seconds and draws them as
// inline SVG. No libraries. Every data mark carries data-series (and data-value) so tests and people can read it.
// User-supplied text (queries, questions) only ever reaches the page as text nodes, never as markup.

const ROUTES = ["ft", "rag", "both"];
const STAGES = ["embed", "classify", "retrieve", "generate"];
const PERCENTILES = ["p50", "p95", "p99"];
const BUCKETS = { 900: 30, 3600: 30, 86400: 48 };
const REFRESH_MS = 5000;
const DECISIONS = 20;
const KEY_STORE = "router.dashboard.key";
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { window: 3600, stats: null, thresholds: null, logs: null, busy: false, again: false, refreshes: 0 };

// ---------------------------------------------------------------- DOM helpers

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  return append(node, children);
}

function html(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  return append(node, children);
}

const tip = (text) => svg("title", {}, text);
const byId = (id) => document.getElementById(id);
const mount = (id, ...nodes) =>
  byId(id).replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
const chip = (route) => html("span", { class: `chip ${route}` }, route);

function canvas(width, height, label) {
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
}

function emptyChart(width, height, message) {
  const root = canvas(width, height, message);
  root.append(svg("text", { x: width / 2, y: height / 2, class: "empty middle" }, message));
  return root;
}

// ---------------------------------------------------------------- formatting and scales

function ms(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value === 0) return "0";
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return value >= 10 ? `${Math.round(value)} ms` : `${value.toFixed(1)} ms`;
}

function percent(share) {
  if (share === null || share === undefined) return "–";
  const digits = share > 0 && share < 0.1 ? 1 : 0;
  return `${(share * 100).toFixed(digits)}%`;
}

function clock(iso, seconds = false) {
  const options = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (seconds) options.second = "2-digit";
  return new Date(iso).toLocaleTimeString([], options);
}

/** The top of an axis of four steps covering ``value``, each step a round number (whole for counts). */
function niceMax(value, whole = false) {
  if (!(value > 0)) return whole ? 4 : 1;
  const raw = value / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const steps = whole ? [1, 2, 3, 4, 5, 6, 8, 10] : [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
  const step = steps.map((m) => m * power).find((s) => s >= raw && (!whole || Number.isInteger(s)));
  return 4 * (step ?? Math.max(1, Math.ceil(raw)));
}

/** A chart's width: its container's, so that one SVG unit is one pixel and text keeps its size. */
const widthOf = (id, least = 260) => Math.max(least, Math.floor(byId(id).clientWidth));

const sum = (values) => values.reduce((total, v) => total + v, 0);
const fixed = (value, digits = 2) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

/** Horizontal gridlines with labels for a value axis from 0 to ``max``; returns the y of a value. */
function valueAxis(root, box, max, format) {
  const y = (v) => box.bottom - (v / max) * (box.bottom - box.top);
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4;
    root.append(
      svg("line", { x1: box.left, x2: box.right, y1: y(v), y2: y(v), class: i ? "gridline" : "axis" }),
      svg("text", { x: box.left - 6, y: y(v) + 4, class: "end" }, format(v)),
    );
  }
  return y;
}

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(path, status, detail) {
    super(detail);
    this.path = path;
    this.status = status;
  }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** GET a JSON API; a failure becomes an ApiError carrying the problem+json ``detail``. */
async function getJSON(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json", ...authHeaders() }, cache: "no-store" });
  } catch (error) {
    throw new ApiError(path, 0, `service unreachable (${error.message})`);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body?.detail || body?.title || text.slice(0, 300) || response.statusText;
    throw new ApiError(path, response.status, detail);
  }
  return body;
}

// ---------------------------------------------------------------- route mix over time (stacked bars)

function mixOverTime(stats, width) {
  const height = 240;
  const box = { left: 40, right: width - 8, top: 10, bottom: height - 24 };
  const buckets = stats.buckets || [];
  const totals = buckets.map((b) => sum(ROUTES.map((r) => b.counts[r] || 0)));
  if (!buckets.length || !sum(totals)) return emptyChart(width, height, "no decisions in this window");
  const root = canvas(width, height, "Route mix over time");
  const y = valueAxis(root, box, niceMax(Math.max(...totals), true), String);
  const step = (box.right - box.left) / buckets.length;
  const every = Math.ceil(buckets.length / Math.max(2, Math.floor(width / 90)));
  buckets.forEach((bucket, i) => {
    const x = box.left + i * step + step * 0.12;
    let base = 0;
    for (const route of ROUTES) {
      const count = bucket.counts[route] || 0;
      if (!count) continue;
      root.append(
        svg(
          "rect",
          {
            x,
            y: y(base + count),
            width: step * 0.76,
            height: y(base) - y(base + count),
            rx: 2,
            class: `f-${route}`,
            "data-series": route,
            "data-bucket": i,
            "data-value": count,
          },
          tip(`${clock(bucket.start)} · ${route}: ${count}`),
        ),
      );
      base += count;
    }
    if (i % every === 0) {
      root.append(svg("text", { x: x + step * 0.38, y: height - 6, class: "middle" }, clock(bucket.start)));
    }
  });
  return root;
}

// ---------------------------------------------------------------- route mix (donut)

function arcPath(cx, cy, outer, inner, start, end) {
  const point = (radius, angle) => [cx + radius * Math.sin(angle), cy - radius * Math.cos(angle)];
  const large = end - start > Math.PI ? 1 : 0;
  const [x0, y0] = point(outer, start);
  const [x1, y1] = point(outer, end);
  const [x2, y2] = point(inner, end);
  const [x3, y3] = point(inner, start);
  return `M${x0},${y0} A${outer},${outer} 0 ${large} 1 ${x1},${y1} L${x2},${y2} A${inner},${inner} 0 ${large} 0 ${x3},${y3} Z`;
}

function mixDonut(stats, width) {
  const height = 240;
  const counts = Object.fromEntries(ROUTES.map((r) => [r, sum((stats.buckets || []).map((b) => b.counts[r] || 0))]));
  const total = sum(Object.values(counts));
  if (!total) return emptyChart(width, height, "no decisions in this window");
  const root = canvas(width, height, "Route mix");
  const [outer, inner] = [100, 66];
  const left = Math.max(0, (width - (2 * outer + 120)) / 2);
  const [cx, cy] = [left + outer, 120];
  let angle = 0;
  for (const route of ROUTES) {
    if (!counts[route]) continue;
    const share = counts[route] / total;
    const end = angle + Math.min(share, 0.99999) * 2 * Math.PI;
    root.append(
      svg(
        "path",
        {
          d: arcPath(cx, cy, outer, inner, angle, end),
          class: `f-${route}`,
          "data-series": route,
          "data-value": counts[route],
        },
        tip(`${route}: ${counts[route]} (${percent(share)})`),
      ),
    );
    angle = end;
  }
  root.append(
    svg("text", { x: cx, y: cy + 4, class: "big middle" }, String(stats.requests)),
    svg("text", { x: cx, y: cy + 24, class: "middle" }, "decisions"),
  );
  ROUTES.forEach((route, i) => {
    const top = 70 + i * 38;
    root.append(
      svg("rect", { x: cx + outer + 24, y: top, width: 10, height: 10, rx: 3, class: `f-${route}` }),
      svg("text", { x: cx + outer + 40, y: top + 9, class: "strong" }, route),
      svg(
        "text",
        { x: cx + outer + 40, y: top + 25 },
        `${percent(stats.mix?.[route] ?? counts[route] / total)} · ${counts[route]}`,
      ),
    );
  });
  return root;
}

// ---------------------------------------------------------------- confidence histograms

function histogram(route, data, threshold, width) {
  const height = 160;
  const box = { left: 30, right: width - 6, top: 24, bottom: height - 22 };
  const root = canvas(width, height, `Confidence histogram for ${route}`);
  const counts = data?.counts || [];
  const edges = data?.edges || [];
  const y = valueAxis(root, box, niceMax(Math.max(0, ...counts), true), String);
  const x = (v) => box.left + v * (box.right - box.left);
  counts.forEach((count, i) => {
    if (!count) return;
    const [lo, hi] = [edges[i], edges[i + 1]];
    root.append(
      svg(
        "rect",
        {
          x: x(lo) + 0.5,
          y: y(count),
          width: Math.max(1, x(hi) - x(lo) - 1),
          height: box.bottom - y(count),
          class: `f-${route}`,
          "data-series": route,
          "data-bin": i,
          "data-value": count,
        },
        tip(`${lo.toFixed(2)}–${hi.toFixed(2)}: ${count}`),
      ),
    );
  });
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    root.append(svg("text", { x: x(v), y: height - 6, class: "middle" }, v.toFixed(2)));
  }
  if (threshold !== undefined && threshold !== null) {
    root.append(
      svg("line", {
        x1: x(threshold),
        x2: x(threshold),
        y1: box.top - 8,
        y2: box.bottom,
        class: "marker-dash",
        "data-series": `threshold-${route}`,
        "data-value": threshold,
      }),
      svg(
        "text",
        {
          x: x(threshold),
          y: box.top - 12,
          class: threshold < 0.1 ? "strong" : threshold > 0.9 ? "end strong" : "middle strong",
        },
        `t = ${threshold.toFixed(2)}`,
      ),
    );
  }
  return root;
}

function confidencePanels(stats) {
  const thresholds = state.thresholds?.thresholds || {};
  const container = byId("chart-confidence");
  const width =
    container.clientWidth < 700 ? widthOf("chart-confidence") : Math.floor((container.clientWidth - 40) / 3);
  return ROUTES.map((route) => {
    const data = stats.confidence?.[route];
    const n = sum(data?.counts || []);
    return html(
      "div",
      { class: "histogram", "data-route": route },
      html("h3", {}, chip(route), html("span", { class: "meta" }, `${n} scores`)),
      histogram(route, data, thresholds[route], width),
    );
  });
}

// ---------------------------------------------------------------- latency (grouped bars)

function latencyBars(groups, label, width) {
  const height = 220;
  const box = { left: 52, right: width - 8, top: 12, bottom: height - 38 };
  const present = groups.filter(([, values]) => values);
  const top = Math.max(0, ...present.flatMap(([, values]) => PERCENTILES.map((p) => values[p] || 0)));
  if (!present.length || !top) return emptyChart(width, height, "no timings in this window");
  const root = canvas(width, height, label);
  const y = valueAxis(root, box, niceMax(top), ms);
  const step = (box.right - box.left) / groups.length;
  const bar = Math.min(26, (step * 0.8) / PERCENTILES.length);
  groups.forEach(([name, values], i) => {
    const centre = box.left + step * (i + 0.5);
    const start = centre - (bar * PERCENTILES.length) / 2;
    PERCENTILES.forEach((p, j) => {
      const value = values?.[p];
      if (value === undefined || value === null) return;
      root.append(
        svg(
          "rect",
          {
            x: start + j * bar + 1,
            y: y(value),
            width: bar - 2,
            height: box.bottom - y(value),
            rx: 2,
            class: `f-${p}`,
            "data-series": p,
            "data-group": name,
            "data-value": value,
          },
          tip(`${name} ${p}: ${ms(value)}`),
        ),
      );
    });
    root.append(
      svg("text", { x: centre, y: box.bottom + 15, class: "middle strong" }, name),
      svg("text", { x: centre, y: box.bottom + 29, class: "middle" }, `p95 ${ms(values?.p95)}`),
    );
  });
  return root;
}

// ---------------------------------------------------------------- horizontal bars (reasons, PSI, thresholds)

/** One labelled horizontal bar per item, on a shared 0..max scale, with an optional marker line per item. */
function hbars(items, { width, max, format, label, marker, markerLabel }) {
  const rowHeight = 30;
  const height = items.length * rowHeight + (markerLabel ? 22 : 4);
  const box = { left: 110, right: width - 60 };
  const x = (v) => box.left + (Math.min(v, max) / max) * (box.right - box.left);
  const root = canvas(width, height, label);
  items.forEach((item, i) => {
    const top = 6 + i * rowHeight;
    root.append(
      svg("text", { x: box.left - 10, y: top + 14, class: "end strong" }, item.label),
      svg("rect", { x: box.left, y: top + 3, width: box.right - box.left, height: 14, rx: 4, class: "track" }),
      svg(
        "rect",
        {
          x: box.left,
          y: top + 3,
          width: Math.max(item.value > 0 ? 2 : 0, x(item.value) - box.left),
          height: 14,
          rx: 4,
          class: item.className,
          "data-series": item.series,
          "data-value": item.value,
        },
        tip(`${item.label}: ${format(item.value)}`),
      ),
      svg("text", { x: box.right + 8, y: top + 14 }, format(item.value)),
    );
    const at = item.marker ?? marker;
    if (at !== undefined && at !== null) {
      root.append(
        svg("line", {
          x1: x(at),
          x2: x(at),
          y1: top,
          y2: top + 20,
          class: item.markerClass || "alert-line",
          "data-series": item.markerSeries,
          "data-value": item.markerSeries ? at : null,
        }),
      );
    }
  });
  if (markerLabel && marker !== undefined) {
    root.append(svg("text", { x: x(marker), y: height - 4, class: "middle" }, markerLabel));
  }
  return root;
}

// ---------------------------------------------------------------- fallbacks

function fallbackTimeline(stats, width) {
  const height = 70;
  const buckets = stats.buckets || [];
  const root = canvas(width, height, "Fallbacks over time");
  const max = Math.max(1, ...buckets.map((b) => b.fallbacks || 0));
  const step = (width - 40) / Math.max(1, buckets.length);
  root.append(svg("line", { x1: 40, x2: width, y1: height - 16, y2: height - 16, class: "axis" }));
  root.append(svg("text", { x: 34, y: 14, class: "end" }, String(max)));
  buckets.forEach((bucket, i) => {
    if (!bucket.fallbacks) return;
    const h = (bucket.fallbacks / max) * (height - 26);
    root.append(
      svg(
        "rect",
        {
          x: 40 + i * step + step * 0.15,
          y: height - 16 - h,
          width: step * 0.7,
          height: h,
          rx: 2,
          class: "f-warn",
          "data-series": "fallbacks",
          "data-bucket": i,
          "data-value": bucket.fallbacks,
        },
        tip(`${clock(bucket.start)} · ${bucket.fallbacks} fallbacks of ${bucket.requests}`),
      ),
    );
  });
  if (buckets.length) {
    root.append(
      svg("text", { x: 40, y: height - 2 }, clock(buckets[0].start)),
      svg("text", { x: width, y: height - 2, class: "end" }, clock(stats.until)),
    );
  }
  return root;
}

function fallbackPanel(stats) {
  const reasons = Object.entries(stats.fallbacks_by_reason || {}).sort((a, b) => b[1] - a[1]);
  const fellBack = sum(reasons.map(([, n]) => n));
  byId("fallback-hint").textContent = `${percent(stats.fallback_rate)} of ${stats.requests} decisions`;
  const headline = html(
    "p",
    { class: "note" },
    html("strong", {}, percent(stats.fallback_rate || 0)),
    fellBack
      ? ` fell back (${fellBack} answers came from another step)`
      : " fell back: every answer came from its route",
  );
  const width = widthOf("chart-fallbacks");
  const nodes = [headline, fallbackTimeline(stats, width)];
  if (reasons.length) {
    const items = reasons.map(([reason, n]) => ({ label: reason, value: n, className: "f-warn", series: "reason" }));
    nodes.push(hbars(items, { width, max: reasons[0][1], format: String, label: "Fallbacks by reason" }));
  }
  return nodes;
}

// ---------------------------------------------------------------- drift

function driftPanel(stats) {
  const drift = stats.drift;
  const card = byId("drift-card");
  const badge = byId("drift-badge");
  if (!drift) {
    card.dataset.alert = "false";
    badge.dataset.kind = "idle";
    badge.textContent = "not enough traffic";
    const note = `Not measured: too few decisions in the window (${stats.requests}) for a stable estimate.`;
    return [html("p", { class: "note" }, note)];
  }
  card.dataset.alert = String(drift.alert);
  badge.dataset.kind = drift.alert ? "bad" : "ok";
  badge.textContent = drift.alert ? "DRIFT ALERT" : "stable";
  const alertAt = drift.alert_level;
  const psi = (score) => (score >= alertAt ? "f-bad" : "f-ok");
  const scale = niceMax(Math.max(alertAt * 2, drift.index, drift.embedding || 0, ...Object.values(drift.scores || {})));
  const width = widthOf("chart-drift");
  const items = [
    { label: "drift index", value: drift.index, className: drift.alert ? "f-bad" : "f-ok", series: "drift-index" },
    ...ROUTES.map((route) => ({
      label: `PSI ${route}`,
      value: drift.scores?.[route] ?? 0,
      className: psi(drift.scores?.[route] ?? 0),
      series: `psi-${route}`,
    })),
  ];
  if (drift.embedding !== undefined && drift.embedding !== null) {
    items.push({
      label: "PSI embedding",
      value: drift.embedding,
      className: psi(drift.embedding),
      series: "psi-embedding",
    });
  }
  return [
    hbars(items, {
      width,
      max: scale,
      format: (v) => fixed(v, 3),
      label: "Drift against the training distribution",
      marker: alertAt,
      markerLabel: `alert level ${fixed(alertAt, 2)}`,
    }),
    html(
      "p",
      { class: "note" },
      `Population stability of the live scores against the model's reference: `,
      `${drift.live_rows} live vs ${drift.reference_rows} reference rows.`,
    ),
  ];
}

// ---------------------------------------------------------------- thresholds and knob

function thresholdsPanel(view) {
  byId("thresholds-hint").textContent =
    `v${view.version} · ${view.updated_by} · ${new Date(view.updated_at).toLocaleString()}`;
  const width = widthOf("chart-thresholds");
  const items = ROUTES.map((route) => ({
    label: route,
    value: view.thresholds[route],
    className: `f-${route}`,
    series: `threshold-${route}`,
  }));
  const nodes = [
    hbars(items, { width, max: 1, format: (v) => fixed(v, 2), label: "Thresholds per route" }),
    html(
      "p",
      { class: "note" },
      html("strong", {}, `cost weight ${fixed(view.cost_weight, 3)}`),
      " — success probability given up per retrieval call; a route is eligible when its score clears its threshold.",
    ),
  ];
  if (view.expected) {
    const mix = ROUTES.map((route) => ({
      label: `expect ${route}`,
      value: view.expected.mix[route] || 0,
      className: `f-${route}`,
      series: `expected-${route}`,
    }));
    nodes.push(hbars(mix, { width, max: 1, format: percent, label: "Expected mix on recent traffic" }));
  }
  return nodes;
}

// ---------------------------------------------------------------- KPI tiles

function kpi(label, value, sub, kind) {
  return html(
    "div",
    { class: "kpi", "data-kind": kind },
    html("div", { class: "label" }, label),
    html("div", { class: "value" }, value),
    html("div", { class: "sub" }, sub),
  );
}

function kpis(stats, view) {
  const minutes = stats.window_seconds / 60;
  const drift = stats.drift;
  return [
    kpi("Decisions", String(stats.requests), `in the last ${windowName(stats.window_seconds)}`),
    kpi("Rate", `${(stats.requests / minutes).toFixed(1)}/min`, "decisions per minute"),
    kpi(
      "Fallback rate",
      percent(stats.fallback_rate || 0),
      "answered by another step",
      stats.fallback_rate > 0.1 ? "bad" : null,
    ),
    kpi("Latency p95", ms(stats.latency_ms?.total?.p95), `p50 ${ms(stats.latency_ms?.total?.p50)}`),
    kpi(
      "Drift index",
      drift ? fixed(drift.index, 3) : "–",
      drift ? `alert at ${fixed(drift.alert_level, 2)}` : "needs more decisions",
      drift ? (drift.alert ? "bad" : "ok") : null,
    ),
    kpi(
      "Thresholds",
      view ? `v${view.version}` : "–",
      view ? `cost weight ${fixed(view.cost_weight, 3)}` : "unavailable",
    ),
  ];
}

function windowName(seconds) {
  if (seconds >= 3600) return `${+(seconds / 3600).toFixed(1)} h`;
  return seconds >= 60 ? `${+(seconds / 60).toFixed(1)} min` : `${seconds} s`;
}

// ---------------------------------------------------------------- latest decisions

function scoreSpark(scores) {
  const root = svg("svg", { viewBox: "0 0 54 18", width: 54, height: 18, "aria-label": "scores" });
  ROUTES.forEach((route, i) => {
    const value = scores?.[route] ?? 0;
    root.append(
      svg("rect", { x: i * 18, y: 0, width: 14, height: 18, rx: 2, class: "track" }),
      svg(
        "rect",
        {
          x: i * 18,
          y: 18 - value * 18,
          width: 14,
          height: value * 18,
          rx: 2,
          class: `f-${route}`,
          "data-series": `score-${route}`,
          "data-value": value,
        },
        tip(`${route} ${fixed(value)}`),
      ),
    );
  });
  return root;
}

function decisionRow(record) {
  const tags = [];
  if (record.route_source === "request") tags.push(html("span", { class: "tag" }, "forced"));
  if (record.fallback) tags.push(html("span", { class: "tag bad" }, `fallback → ${record.fallback.to}`));
  if (record.status === "decided") tags.push(html("span", { class: "tag" }, "route only"));
  if (record.status === "no_answer") tags.push(html("span", { class: "tag bad" }, "no answer"));
  const row = html(
    "li",
    { tabindex: 0, role: "button", "data-request-id": record.request_id, title: record.request_id },
    html("span", { class: "time" }, clock(record.ts, true)),
    chip(record.route),
    scoreSpark(record.scores),
    html("span", { class: "query" }, record.query),
    html("span", {}, tags),
    html("span", { class: "ms" }, ms(record.timings_ms?.total)),
  );
  row.addEventListener("click", () => openDrill(record.request_id));
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openDrill(record.request_id);
    }
  });
  return row;
}

function renderDecisions(page) {
  const records = page.records || [];
  if (!records.length) {
    mount("decisions", html("li", { class: "empty" }, "no decisions recorded yet"));
    return;
  }
  mount("decisions", ...records.map(decisionRow));
}

// ---------------------------------------------------------------- drill-down

function marginBars(record, width) {
  const margins = record.explanation?.margins || {};
  const rowHeight = 34;
  const box = { left: 70, right: Math.max(200, width - 300) };
  const x = (v) => box.left + v * (box.right - box.left);
  const root = canvas(width, ROUTES.length * rowHeight + 20, "Scores against thresholds");
  ROUTES.forEach((route, i) => {
    const top = 4 + i * rowHeight;
    const m = margins[route] || { score: record.scores?.[route], threshold: null };
    const chosen = record.explanation?.chosen === route || record.route === route;
    root.append(
      svg(
        "text",
        { x: box.left - 10, y: top + 15, class: `end${chosen ? " strong" : ""}` },
        chosen ? `▶ ${route}` : route,
      ),
      svg("rect", { x: box.left, y: top + 4, width: box.right - box.left, height: 14, rx: 4, class: "track" }),
      svg(
        "rect",
        {
          x: box.left,
          y: top + 4,
          width: x(m.score ?? 0) - box.left,
          height: 14,
          rx: 4,
          class: `f-${route}`,
          "data-series": `score-${route}`,
          "data-value": m.score,
        },
        tip(`${route} score ${fixed(m.score, 3)}`),
      ),
    );
    if (m.threshold !== null && m.threshold !== undefined) {
      root.append(
        svg(
          "line",
          {
            x1: x(m.threshold),
            x2: x(m.threshold),
            y1: top,
            y2: top + 22,
            class: "marker",
            "data-series": `threshold-${route}`,
            "data-value": m.threshold,
          },
          tip(`threshold ${fixed(m.threshold, 3)}`),
        ),
      );
    }
    const margin = m.margin ?? (m.threshold === null || m.threshold === undefined ? null : m.score - m.threshold);
    const verdict = m.above_threshold === undefined ? "" : m.above_threshold ? "eligible" : "below threshold";
    const parts = [`score ${fixed(m.score, 3)}`];
    if (margin !== null) parts.push(`margin ${margin >= 0 ? "+" : ""}${fixed(margin, 3)}`);
    if (m.utility !== undefined && m.utility !== null) parts.push(`utility ${fixed(m.utility, 3)}`);
    root.append(
      svg("text", { x: box.right + 14, y: top + 10, class: chosen ? "strong" : "" }, parts.join(" · ")),
      svg("text", { x: box.right + 14, y: top + 24 }, verdict),
    );
  });
  root.append(
    svg("text", { x: box.left, y: ROUTES.length * rowHeight + 16 }, "0"),
    svg("text", { x: box.right, y: ROUTES.length * rowHeight + 16, class: "end" }, "1"),
    svg(
      "text",
      { x: (box.left + box.right) / 2, y: ROUTES.length * rowHeight + 16, class: "middle" },
      "calibrated score; black line: threshold",
    ),
  );
  return root;
}

function timingBar(timings, width) {
  const height = 46;
  const root = canvas(width, height, "Timings");
  const total = timings?.total || sum(STAGES.map((s) => timings?.[s] || 0)) || 1;
  const scale = (width - 120) / total;
  let x = 0;
  STAGES.forEach((stage) => {
    const value = timings?.[stage] || 0;
    root.append(
      svg(
        "rect",
        {
          x,
          y: 4,
          width: Math.max(value > 0 ? 1 : 0, value * scale),
          height: 18,
          class: `f-stage-${stage}`,
          "data-series": `timing-${stage}`,
          "data-value": value,
        },
        tip(`${stage}: ${ms(value)}`),
      ),
    );
    if (value * scale > 60) root.append(svg("text", { x: x + 4, y: 17, class: "strong" }, stage));
    x += value * scale;
  });
  root.append(svg("text", { x: width - 110, y: 17, class: "strong" }, `total ${ms(timings?.total)}`));
  root.append(svg("text", { x: 0, y: 40 }, STAGES.map((s) => `${s} ${ms(timings?.[s])}`).join("   ·   ")));
  return root;
}

function neighbourRow(neighbour) {
  const similarity = neighbour.similarity ?? 0;
  const bar = svg(
    "svg",
    { viewBox: "0 0 120 14", width: 120, height: 14 },
    svg("rect", { x: 0, y: 2, width: 120, height: 10, rx: 3, class: "track" }),
    svg(
      "rect",
      {
        x: 0,
        y: 2,
        width: Math.max(0, similarity) * 120,
        height: 10,
        rx: 3,
        class: "f-muted",
        "data-series": "similarity",
        "data-value": similarity,
      },
      tip(`similarity ${fixed(similarity, 3)}`),
    ),
  );
  const em = html(
    "span",
    { class: "em", title: "which routes answered it exactly (training outcome)" },
    ROUTES.map((route) => html("span", { class: neighbour.em?.[route] ? `hit ${route}` : "" }, route)),
  );
  const best = neighbour.best_route || "none"; // none: no route answered it exactly
  return html(
    "li",
    { "data-neighbour": "", "data-best-route": best },
    html("span", { class: "q" }, neighbour.question),
    chip(best),
    html("span", { class: "sim" }, bar, ` ${fixed(similarity, 2)}`),
    em,
  );
}

function drillContent(record, width) {
  const fallback = record.fallback
    ? html(
        "div",
        { class: "fallback-box" },
        html("strong", {}, `Fell back to ${record.fallback.to}`),
        `: ${record.fallback.reason}`,
        (record.failures || []).length ? ` (${record.failures.length} failed steps)` : "",
      )
    : html("p", { class: "note" }, `No fallback: answered by ${record.answered_by || record.route}.`);
  const neighbours = record.explanation?.neighbours || [];
  return [
    html("p", { class: "drill-query" }, record.query),
    html(
      "div",
      { class: "drill-meta" },
      chip(record.route),
      html(
        "span",
        {},
        record.route_source === "request" ? "route forced by the request" : "route chosen by the policy",
      ),
      html("span", {}, "id ", html("code", {}, record.request_id)),
      html("span", {}, new Date(record.ts).toLocaleString()),
      html("span", {}, `${record.endpoint} · ${record.status}`),
      html(
        "span",
        {},
        `knob ${fixed(record.cost_weight, 3)} (${record.knob_source}) · thresholds v${record.thresholds_version}`,
      ),
      html("span", {}, `model ${record.model_version}`),
      record.llm_model ? html("span", {}, `LLM ${record.llm_model}`) : null,
    ),
    html("h3", {}, "Scores against thresholds"),
    marginBars(record, width),
    record.explanation?.thresholds_note ? html("p", { class: "note" }, record.explanation.thresholds_note) : null,
    html("h3", {}, "Fallback"),
    fallback,
    html("h3", {}, "Timings"),
    timingBar(record.timings_ms, width),
    html("h3", {}, `Nearest training questions (${neighbours.length})`),
    neighbours.length
      ? html("ol", { class: "neighbours" }, neighbours.map(neighbourRow))
      : html("p", { class: "note" }, "no labelled neighbours in the model bundle"),
  ];
}

async function openDrill(requestId) {
  const dialog = byId("drill");
  byId("drill-title").textContent = "Decision";
  mount("drill-body", html("p", { class: "note" }, "loading…"));
  dialog.dataset.state = "loading";
  if (!dialog.open) dialog.showModal();
  try {
    const record = await getJSON(`/v1/routing-logs/${encodeURIComponent(requestId)}`);
    mount("drill-body", ...drillContent(record, Math.max(480, byId("drill-body").clientWidth)));
    dialog.dataset.state = "ready";
  } catch (error) {
    mount("drill-body", html("p", { class: "errors" }, errorText(error)));
    dialog.dataset.state = "error";
  }
}

// ---------------------------------------------------------------- refresh loop

function errorText(error) {
  if (error instanceof ApiError) return `GET ${error.path}: ${error.status || "network"} ${error.message}`;
  return `${error.name}: ${error.message}`;
}

function showErrors(errors) {
  const box = byId("errors");
  box.hidden = !errors.length;
  box.replaceChildren(...errors.map((error) => html("p", {}, errorText(error))));
  const needsKey = errors.some((error) => error.status === 401 || error.status === 403);
  byId("key-form").dataset.needed = String(needsKey);
}

function legends() {
  const swatch = (name) => html("span", {}, html("i", { class: `swatch ${name}` }), name);
  for (const node of document.querySelectorAll('[data-legend="routes"]')) node.replaceChildren(...ROUTES.map(swatch));
  for (const node of document.querySelectorAll('[data-legend="percentiles"]'))
    node.replaceChildren(...PERCENTILES.map(swatch));
}

function renderStats(stats) {
  byId("mix-time-hint").textContent =
    `decisions per ${windowName(Math.round(stats.window_seconds / (stats.buckets?.length || 1)) || 1)}`;
  mount("chart-mix-time", mixOverTime(stats, widthOf("chart-mix-time")));
  mount("chart-mix", mixDonut(stats, widthOf("chart-mix", 320)));
  mount("chart-confidence", ...confidencePanels(stats));
  const stages = [...STAGES, "total"].map((s) => [s, stats.latency_ms?.[s]]);
  mount("chart-latency-stage", latencyBars(stages, "Latency by stage", widthOf("chart-latency-stage")));
  const routes = ROUTES.map((r) => [r, stats.latency_by_route_ms?.[r]]);
  mount("chart-latency-route", latencyBars(routes, "Latency by route", widthOf("chart-latency-route")));
  mount("chart-fallbacks", ...fallbackPanel(stats));
  mount("chart-drift", ...driftPanel(stats));
}

/** Runs ``draw``; a drawing bug becomes a visible error (and a console error) instead of a frozen page. */
function guarded(errors, draw) {
  try {
    draw();
  } catch (error) {
    console.error(error);
    errors.push(error);
  }
}

/** Draws the latest data received (the last good answer of each API stays on screen while a call fails). */
function draw(errors = []) {
  if (state.thresholds) guarded(errors, () => mount("chart-thresholds", ...thresholdsPanel(state.thresholds)));
  if (state.stats) {
    guarded(errors, () => renderStats(state.stats));
    guarded(errors, () => mount("kpis", ...kpis(state.stats, state.thresholds)));
  }
  if (state.logs) guarded(errors, () => renderDecisions(state.logs));
}

async function refresh() {
  if (state.busy) {
    state.again = true; // a window or key changed mid-load: load once more when this one ends
    return;
  }
  state.busy = true;
  try {
    await load();
  } finally {
    state.busy = false;
  }
  if (state.again) {
    state.again = false;
    refresh();
  }
}

async function load() {
  const seconds = state.window;
  const calls = [
    `/v1/stats?window=${seconds}&buckets=${BUCKETS[seconds]}`,
    "/v1/thresholds",
    `/v1/routing-logs?limit=${DECISIONS}`,
  ];
  const [stats, view, logs] = await Promise.allSettled(calls.map(getJSON));
  const errors = [stats, view, logs].filter((r) => r.status === "rejected").map((r) => r.reason);
  if (view.status === "fulfilled") state.thresholds = view.value;
  if (stats.status === "fulfilled" && seconds === state.window) state.stats = stats.value;
  if (logs.status === "fulfilled") state.logs = logs.value;
  draw(errors);
  showErrors(errors);
  const status = byId("status");
  status.dataset.kind = errors.length ? "error" : "ok";
  status.textContent = errors.length
    ? `${errors.length} failed · ${clock(new Date(), true)}`
    : `live · ${clock(new Date(), true)}`;
  state.refreshes += 1;
  document.body.dataset.refreshes = String(state.refreshes);
  document.body.dataset.state = errors.length ? "error" : "ready";
}

// ---------------------------------------------------------------- controls

function takeKeyFromUrl() {
  const url = new URL(window.location.href);
  const key = url.searchParams.get("key");
  if (key) {
    sessionStorage.setItem(KEY_STORE, key);
    url.searchParams.delete("key");
    window.history.replaceState(null, "", url); // the key does not stay in the address bar or history
  }
}

function showKeyState() {
  const stored = Boolean(sessionStorage.getItem(KEY_STORE));
  byId("key").placeholder = stored ? "key kept for this tab" : "admin key";
  byId("key-clear").hidden = !stored;
}

function selectWindow(seconds) {
  state.window = seconds;
  for (const button of byId("window").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.window) === seconds));
  }
  const url = new URL(window.location.href);
  url.searchParams.set("window", String(seconds));
  window.history.replaceState(null, "", url);
}

function wire() {
  byId("window").addEventListener("click", (event) => {
    const seconds = Number(event.target.closest("button")?.dataset.window);
    if (!BUCKETS[seconds]) return;
    selectWindow(seconds);
    refresh();
  });
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = byId("key");
    if (input.value.trim()) sessionStorage.setItem(KEY_STORE, input.value.trim());
    input.value = "";
    showKeyState();
    refresh();
  });
  byId("key-clear").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    showKeyState();
    refresh();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => draw(), 150);
  });
  byId("drill-close").addEventListener("click", () => byId("drill").close());
  byId("drill").addEventListener("click", (event) => {
    const box = event.currentTarget.getBoundingClientRect();
    const inside =
      event.clientX >= box.left &&
      event.clientX <= box.right &&
      event.clientY >= box.top &&
      event.clientY <= box.bottom;
    if (event.target === event.currentTarget && !inside) event.currentTarget.close(); // a click on the backdrop
  });
}

function start() {
  takeKeyFromUrl();
  const asked = Number(new URL(window.location.href).searchParams.get("window"));
  selectWindow(BUCKETS[asked] ? asked : 3600);
  showKeyState();
  legends();
  wire();
  refresh();
  setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
}

start();
