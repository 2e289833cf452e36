// The FareGate dashboard: a single page over the admin API. Every string from the API is put in
// the page as text (textContent / text nodes), never parsed as HTML.
import { timeSeries, hBars, shareBars, stackedColumns, colorFor, formatTime } from "./charts.js";

const API = "/faregate/v1";
const RANGES = { "24h": [86400, "hour"], "7d": [7 * 86400, "day"], "30d": [30 * 86400, "day"] };
const KEY_STORE = "faregate.adminKey";
const SAVINGS = ["prompt_cache", "semantic_cache", "routing", "history", "caps"];
const SAVING_NAMES = {
  prompt_cache: "Prompt cache", semantic_cache: "Semantic cache", routing: "Routing", history: "History", caps: "Output caps",
};
const COMPONENTS = ["system", "tools", "history", "context", "query", "overhead"];
const DIMENSIONS = ["feature", "team", "template", "cohort", "model", "user"];
const FILTERABLE = ["feature", "team", "template", "cohort", "model"];
const TIERS = ["small", "medium", "frontier"];

// ---------- DOM and formatting helpers ----------

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "className") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2).toLowerCase(), v);
    else node.setAttribute(k, String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function money(v) {
  if (v == null || Number.isNaN(Number(v))) return "—";
  const n = Number(v);
  const a = Math.abs(n);
  const d = a >= 100 ? 2 : a >= 0.01 || a === 0 ? 4 : 6;
  return `$${n.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d })}`;
}
const count = (v) => (v == null ? "—" : Number(v).toLocaleString("en-US", { maximumFractionDigits: 0 }));
const num = (v, d = 1) => (v == null ? "—" : Number(v).toLocaleString("en-US", { maximumFractionDigits: d }));
const pct = (v) => (v == null ? "—" : `${(100 * Number(v)).toFixed(1)}%`);
const sum = (xs) => xs.reduce((a, x) => a + (Number(x) || 0), 0);

function card(label, value, metric, raw) {
  return h("div", { className: "card" },
    h("div", { className: "label" }, label),
    h("div", { className: "value", dataset: { metric, value: String(raw ?? "") } }, value));
}

function panel(title, ...children) {
  return h("section", { className: "panel" }, title ? h("h2", {}, title) : null, ...children);
}

// columns: [{label, value: row => shown, num?: bool, metric?: name, raw?: row => number}]
function table(columns, rows, keyOf = null) {
  if (!rows.length) return h("p", { className: "empty" }, "No rows in this range.");
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { className: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", { dataset: keyOf ? { key: keyOf(row) } : {} },
      columns.map((c) => h("td", {
        className: c.num ? "num" : null,
        dataset: c.metric ? { metric: c.metric, value: String(c.raw ? c.raw(row) : "") } : {},
      }, c.value(row)))))));
}

// ---------- state: page, range and drill-down live in the URL (never the key) ----------

function currentPage() {
  const rest = location.pathname.replace(/^\/dashboard\/?/, "").replace(/\/$/, "");
  return PAGES[rest] ? rest : "overview";
}

function params() {
  return new URLSearchParams(location.search);
}

function rangeName() {
  const r = params().get("range");
  return RANGES[r] ? r : "24h";
}

let window_ = null; // {since, until, bucket} of the current render

function navigate(path, query) {
  const q = new URLSearchParams(query);
  if (rangeName() !== "24h" && !q.has("range")) q.set("range", rangeName());
  const qs = q.toString();
  history.pushState(null, "", qs ? `${path}?${qs}` : path);
  render();
}

// ---------- the API ----------

class AuthError extends Error {}

async function api(path, query = {}) {
  const url = new URL(API + path, location.origin);
  url.searchParams.set("since", String(window_.since));
  url.searchParams.set("until", String(window_.until));
  url.searchParams.set("bucket", window_.bucket);
  for (const [k, v] of Object.entries(query)) if (v != null && v !== "") url.searchParams.set(k, v);
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  const message = body && body.error && body.error.message ? body.error.message : `HTTP ${response.status}`;
  if (response.status === 401 || response.status === 403) throw new AuthError(message);
  if (!response.ok) throw new Error(`${path}: ${message}`);
  return body;
}

// ---------- pages ----------

async function overview() {
  const [ov, routing] = await Promise.all([api("/overview"), api("/routing")]);
  const t = ov.totals;
  const saved = sum(SAVINGS.map((k) => t.savings_usd[k]));
  const bucket = ov.bucket || window_.bucket;
  const series = ov.series || [];
  const cards = h("div", { className: "cards" },
    card("Spend", money(t.cost_usd), "total-cost", t.cost_usd),
    card("Baseline (no FareGate)", money(t.baseline_usd), "total-baseline", t.baseline_usd),
    card("Saved", money(saved), "total-savings", saved),
    card("Saved share", t.baseline_usd ? pct(saved / t.baseline_usd) : "—", "savings-share", t.baseline_usd ? saved / t.baseline_usd : ""),
    card("Requests", count(t.requests), "total-requests", t.requests),
    card("Errors", count(t.errors), "total-errors", t.errors),
    card("Cache hit rate", pct(ov.cache.hit_rate), "cache-hit-rate", ov.cache.hit_rate),
    card("Tokens in / out", `${count(t.input_tokens)} / ${count(t.output_tokens)}`, "tokens", `${t.input_tokens}/${t.output_tokens}`));
  const spend = timeSeries("spend", {
    label: "Spend and baseline over time", bucket, format: money,
    series: [
      { name: "Spend", points: series.map((p) => [p.ts, p.cost_usd]) },
      { name: "Baseline", points: series.map((p) => [p.ts, p.baseline_usd]) },
    ],
  });
  const requests = timeSeries("requests", {
    label: "Requests over time", bucket, kind: "bars", format: count,
    series: [{ name: "Requests", points: series.map((p) => [p.ts, p.requests]) }],
  });
  const savingsOverTime = timeSeries("savings-over-time", {
    label: "Savings by strategy over time", bucket, kind: "bars", format: money,
    series: SAVINGS.map((k) => ({ name: SAVING_NAMES[k], points: series.map((p) => [p.ts, (p.savings_usd || {})[k] || 0]) })),
  });
  const savingsByStrategy = hBars("savings-by-strategy", {
    label: "Savings by strategy", format: money,
    items: SAVINGS.map((k, i) => ({ label: SAVING_NAMES[k], value: t.savings_usd[k] || 0, color: colorFor(i) })),
    caption: `Against a baseline of ${money(t.baseline_usd)}: the same requests as sent, on the model asked for.`,
  });
  const cache = shareBars("cache", {
    label: "Response cache results", keys: ["exact hit", "semantic hit", "miss"], format: count,
    rows: [{ label: "All requests", parts: { "exact hit": ov.cache.exact_hits, "semantic hit": ov.cache.semantic_hits, miss: ov.cache.misses } }],
  });
  const features = routing.features || [];
  const mixRows = [{ label: "All routed", parts: ov.routing }].concat(features.map((f) => ({
    label: f.feature, parts: Object.fromEntries(TIERS.map((tier) => [tier, ((f.tiers || {})[tier] || {}).requests || 0])),
  })));
  const mix = shareBars("routing-mix", { label: "Routing mix by tier", rows: mixRows, keys: TIERS, format: count });
  const routingTable = table([
    { label: "Feature", value: (f) => f.feature },
    { label: "Routed requests", value: (f) => count(f.requests), num: true },
    { label: "Frontier share", value: (f) => pct(f.frontier_share), num: true },
    { label: "Fallbacks", value: (f) => count(f.fallbacks), num: true },
    { label: "Shadow agreement", value: (f) => (f.shadow && f.shadow.compared ? `${pct(f.shadow.agreed / f.shadow.compared)} of ${f.shadow.compared}` : "—"), num: true },
    { label: "Shadow error (95% upper)", value: (f) => pct(f.shadow && f.shadow.error_upper_95), num: true },
  ], features, (f) => f.feature);
  return [
    h("h1", {}, "Overview"),
    cards,
    h("div", { className: "grid" },
      panel("Spend vs baseline", spend),
      panel("Requests", requests),
      panel("Savings by strategy over time", savingsOverTime),
      panel("Savings by strategy", savingsByStrategy),
      panel("Cache hit rate", cache),
      panel("Routing mix", mix)),
    panel("Routing by feature", routingTable),
  ];
}

async function attribution() {
  const q = params();
  const filters = [...q.entries()].filter(([k, v]) => FILTERABLE.includes(k) && v !== "");
  const filterQuery = Object.fromEntries(filters);
  // Spend by user is offered inside a feature (drill down first): across every feature it means
  // reading millions of per-user rows, which the 1-second page budget does not allow.
  const offered = (d) => !(d in filterQuery) && (d !== "user" || "feature" in filterQuery);
  const asked = q.get("by");
  const by = DIMENSIONS.includes(asked) && offered(asked) ? asked : "feature" in filterQuery ? "team" : "feature";
  const data = await api("/attribution", { by, ...filterQuery });
  const rows = (data.rows || []).slice().sort((a, b) => b.cost_usd - a.cost_usd);
  const go = (nextBy, nextFilters) => navigate("/dashboard/attribution", { by: nextBy, ...Object.fromEntries(nextFilters), range: rangeName() });
  const crumbs = h("nav", { className: "crumbs", "aria-label": "Drill-down" },
    h("button", { type: "button", dataset: { crumb: "all" }, onClick: () => go(filters.length ? filters[0][0] : by, []) }, "All"),
    filters.map(([k, v], i) => [
      h("span", { className: "sep" }, "›"),
      h("button", { type: "button", dataset: { crumb: k }, onClick: () => go(filters[i + 1] ? filters[i + 1][0] : by, filters.slice(0, i + 1)) }, `${k}: ${v}`),
    ]),
    h("span", { className: "sep" }, "›"),
    h("span", { className: "muted" }, `by ${by}`));
  const tabs = h("div", { className: "tabs", role: "tablist" }, DIMENSIONS.filter(offered).map((d) =>
    h("button", { type: "button", className: d === by ? "active" : null, dataset: { by: d }, onClick: () => go(d, filters) }, `By ${d}`)));
  const next = DIMENSIONS.find((d) => d !== by && !(d in filterQuery) && FILTERABLE.includes(d));
  const canDrill = FILTERABLE.includes(by) && next;
  const bars = hBars("attribution-bars", {
    label: `Spend by ${by}`, format: money,
    items: rows.map((r) => ({
      label: r.key, value: r.cost_usd,
      tip: `${r.key}: ${money(r.cost_usd)} · ${count(r.requests)} requests · ${pct(r.share)} of spend`,
      onClick: canDrill ? () => go(next, [...filters, [by, r.key]]) : null,
    })),
    caption: canDrill ? `Click a bar to see its spend by ${next}.` : null,
  });
  const top = rows.slice(0, 8).map((r) => r.key);
  const grouped = new Map(top.map((k) => [k, []]));
  for (const p of data.series || []) {
    const key = grouped.has(p.key) ? p.key : "other";
    if (!grouped.has(key)) grouped.set(key, []);
    grouped.get(key).push([p.ts, p.cost_usd]);
  }
  const overTime = timeSeries("attribution-series", {
    label: `Spend by ${by} over time`, bucket: window_.bucket, kind: "bars", format: money,
    series: [...grouped.entries()].map(([name, points]) => ({ name, points })),
  });
  const totalCost = sum(rows.map((r) => r.cost_usd));
  const rowsTable = table([
    { label: by, value: (r) => r.key },
    { label: "Requests", value: (r) => count(r.requests), num: true, metric: "row-requests", raw: (r) => r.requests },
    { label: "Spend", value: (r) => money(r.cost_usd), num: true, metric: "row-cost", raw: (r) => r.cost_usd },
    { label: "Baseline", value: (r) => money(r.baseline_usd), num: true },
    { label: "Saved", value: (r) => money(r.baseline_usd - r.cost_usd), num: true },
    { label: "Input tokens", value: (r) => count(r.input_tokens), num: true },
    { label: "Output tokens", value: (r) => count(r.output_tokens), num: true },
    { label: "Share", value: (r) => pct(r.share), num: true },
  ], rows, (r) => r.key);
  return [
    h("h1", {}, "Attribution"),
    crumbs, tabs,
    h("div", { className: "cards" },
      card("Spend", money(totalCost), "attribution-cost", totalCost),
      card("Requests", count(sum(rows.map((r) => r.requests))), "attribution-requests", sum(rows.map((r) => r.requests))),
      card(`Distinct ${by} values`, count(rows.length), "attribution-keys", rows.length)),
    h("div", { className: "grid" }, panel(`Spend by ${by}`, bars), panel("Over time", overTime)),
    panel(`Rows by ${by}`, rowsTable),
  ];
}

async function unitEconomics() {
  // Daily active users are a per-day number: this page always asks for daily buckets.
  const data = await api("/unit-economics", { bucket: "day" });
  const rows = data.rows || [];
  const bucket = data.bucket || window_.bucket;
  const features = [...new Set(rows.map((r) => r.feature))];
  const per = (field) => features.map((f) => ({
    name: f, points: rows.filter((r) => r.feature === f && r[field] != null).map((r) => [r.ts, r[field]]),
  }));
  const totals = features.map((f) => {
    const mine = rows.filter((r) => r.feature === f);
    const cost = sum(mine.map((r) => r.cost_usd));
    const completions = sum(mine.map((r) => r.completions));
    const last = mine.slice().sort((a, b) => b.ts - a.ts)[0];
    return {
      feature: f, cost, completions, failures: sum(mine.map((r) => r.failures)),
      perCompletion: completions ? cost / completions : null, lastDau: last ? last.dau : null, lastPerDau: last ? last.cost_per_dau : null,
    };
  }).sort((a, b) => b.cost - a.cost);
  return [
    h("h1", {}, "Unit economics"),
    h("div", { className: "grid" },
      panel("Cost per task completion", timeSeries("cost-per-completion", { label: "Cost per completion by feature", bucket, format: money, series: per("cost_per_completion") })),
      panel("Cost per daily active user", timeSeries("cost-per-dau", { label: "Cost per daily active user by feature", bucket, format: money, series: per("cost_per_dau") })),
      panel("Completions", timeSeries("completions", { label: "Task completions by feature", bucket, kind: "bars", format: count, series: per("completions") })),
      panel("Cost per completion, whole range", hBars("cost-per-completion-total", {
        label: "Cost per completion by feature, whole range", format: money,
        items: totals.filter((t) => t.perCompletion != null).map((t) => ({ label: t.feature, value: t.perCompletion })),
      }))),
    panel("By feature", table([
      { label: "Feature", value: (t) => t.feature },
      { label: "Spend", value: (t) => money(t.cost), num: true, metric: "ue-cost", raw: (t) => t.cost },
      { label: "Completions", value: (t) => count(t.completions), num: true, metric: "ue-completions", raw: (t) => t.completions },
      { label: "Failures", value: (t) => count(t.failures), num: true },
      { label: "Cost per completion", value: (t) => money(t.perCompletion), num: true },
      { label: "DAU (latest)", value: (t) => count(t.lastDau), num: true },
      { label: "Cost per DAU (latest)", value: (t) => money(t.lastPerDau), num: true },
    ], totals, (t) => t.feature)),
  ];
}

async function templates() {
  const data = await api("/templates");
  const features = data.features || [];
  const tokenKeys = [...COMPONENTS, "output"];
  const sections = features.map((f) => {
    const list = f.templates || [];
    const alerts = (f.regressions || []).map((r) => h("div", { className: "alert", role: "alert", dataset: { regression: r.template } },
      h("strong", {}, `Regression: ${r.template}`), ` (after ${r.previous}, cost +${pct(r.cost_increase)}) — `, r.message));
    return h("section", { className: "panel", dataset: { feature: f.feature } },
      h("h2", {}, f.feature),
      alerts.length ? alerts : h("div", { className: "ok" }, "No cost regression between template versions."),
      h("div", { className: "grid" },
        hBars("template-cost", {
          label: `Cost per request by template, ${f.feature}`, format: money,
          items: list.map((t) => ({ label: t.template, value: t.cost_per_request_usd })),
        }),
        stackedColumns("template-tokens", {
          label: `Tokens by component, ${f.feature}`, format: (v) => num(v, 0), categories: list.map((t) => t.template),
          series: tokenKeys.map((k) => ({ name: k, values: list.map((t) => (t.tokens || {})[k] || 0) })),
        })),
      table([
        { label: "Template", value: (t) => t.template },
        { label: "First seen", value: (t) => (t.first_seen ? new Date(t.first_seen * 1000).toLocaleString("en-GB") : "—") },
        { label: "Requests", value: (t) => count(t.requests), num: true, metric: "template-requests", raw: (t) => t.requests },
        { label: "Cost / request", value: (t) => money(t.cost_per_request_usd), num: true, metric: "template-cost", raw: (t) => t.cost_per_request_usd },
        { label: "Feedback (mean)", value: (t) => num(t.feedback_mean, 2), num: true },
        { label: "Shadow agreement", value: (t) => pct(t.shadow_agreement), num: true },
      ], list, (t) => t.template));
  });
  return [h("h1", {}, "Templates"), sections.length ? sections : h("p", { className: "empty" }, "No templates in this range.")];
}

async function anatomy() {
  const data = await api("/anatomy");
  const features = data.features || [];
  return [
    h("h1", {}, "Token anatomy"),
    h("div", { className: "grid" },
      panel("Share of input tokens by component", shareBars("anatomy-shares", {
        label: "Input token shares by component per feature", keys: COMPONENTS, format: count,
        rows: features.map((f) => ({ label: f.feature, parts: f.tokens || {} })),
      })),
      panel("Input tokens per request", stackedColumns("anatomy-per-request", {
        label: "Mean input tokens per request by component", format: (v) => num(v, 0),
        categories: features.map((f) => f.feature),
        series: COMPONENTS.map((k) => ({ name: k, values: features.map((f) => (f.requests ? ((f.tokens || {})[k] || 0) / f.requests : 0)) })),
      }))),
    panel("By feature", table([
      { label: "Feature", value: (f) => f.feature },
      { label: "Requests", value: (f) => count(f.requests), num: true, metric: "anatomy-requests", raw: (f) => f.requests },
      ...COMPONENTS.map((k) => ({ label: k, value: (f) => pct((f.shares || {})[k]), num: true, metric: `share-${k}`, raw: (f) => (f.shares || {})[k] })),
    ], features, (f) => f.feature)),
  ];
}

async function promptCache() {
  const data = await api("/prompt-cache");
  const features = data.features || [];
  const findings = features.filter((f) => (f.findings || []).length);
  return [
    h("h1", {}, "Prompt-cache health"),
    h("div", { className: "grid" },
      panel("Cache-read ratio", hBars("cache-read-ratio", {
        label: "Share of input tokens read from the provider's prompt cache", format: pct, max: 1,
        items: features.map((f) => ({ label: f.feature, value: f.cache_read_ratio })),
      })),
      panel("Prefix churn", stackedColumns("prefix-churn", {
        label: "Distinct prefixes per feature", format: (v) => num(v, 0), categories: features.map((f) => f.feature),
        series: [{ name: "distinct prefixes", values: features.map((f) => f.distinct_prefixes) }],
        caption: "A stable prefix (tools + system prompt) is what the provider can cache: fewer is better.",
      }))),
    panel("By feature", table([
      { label: "Feature", value: (f) => f.feature },
      { label: "Requests", value: (f) => count(f.requests), num: true },
      { label: "Cache-read ratio", value: (f) => pct(f.cache_read_ratio), num: true, metric: "cache-read-ratio", raw: (f) => f.cache_read_ratio },
      { label: "Read tokens", value: (f) => count(f.cache_read_tokens), num: true },
      { label: "Write tokens", value: (f) => count(f.cache_write_tokens), num: true },
      { label: "Saved", value: (f) => money(f.saving_usd), num: true },
      { label: "Distinct prefixes", value: (f) => count(f.distinct_prefixes), num: true },
      { label: "Peak prefixes / hour", value: (f) => count((f.prefix_churn || {}).peak_per_hour), num: true },
    ], features, (f) => f.feature)),
    panel("Volatile-span findings", findings.length ? findings.map((f) => h("div", { dataset: { feature: f.feature } },
      h("h3", {}, f.feature),
      h("ul", {}, f.findings.map((x) => h("li", {}, h("span", { className: "mono" }, `${x.kind} @ ${x.location}`), ` — ${count(x.requests)} requests`))))) :
      h("p", { className: "empty" }, "No volatile spans found in cached prefixes.")),
  ];
}

async function budgets() {
  const data = await api("/budgets");
  const list = data.budgets || [];
  const label = (b) => `${b.budget}`;
  const color = (s) => (s >= 1 ? "#c4322b" : s >= 0.8 ? "#b7791f" : "#23845a");
  const top = Math.max(1, ...list.map((b) => Number(b.share) || 0));
  return [
    h("h1", {}, "Budgets"),
    panel("Usage against each budget", hBars("budget-usage", {
      label: "Share of each budget used this period", format: pct, max: top,
      items: list.map((b) => ({
        label: label(b), value: b.share, color: color(b.share), marker: top > 1 ? 1 : null,
        tip: `${b.budget}: ${money(b.spent_usd)} spent + ${money(b.reserved_usd)} reserved of ${money(b.limit_usd)} (${b.period})`,
      })),
    })),
    panel("Budgets", table([
      { label: "Budget", value: (b) => b.budget },
      { label: "Scope", value: (b) => `${b.scope}: ${b.name}` },
      { label: "Period", value: (b) => `${b.period} from ${typeof b.period_start === "number" ? formatTime(b.period_start, "hour") : b.period_start ?? "—"}` },
      { label: "Limit", value: (b) => money(b.limit_usd), num: true, metric: "budget-limit", raw: (b) => b.limit_usd },
      { label: "Spent", value: (b) => money(b.spent_usd), num: true, metric: "budget-spent", raw: (b) => b.spent_usd },
      { label: "Reserved", value: (b) => money(b.reserved_usd), num: true },
      { label: "Used", value: (b) => pct(b.share), num: true, metric: "budget-share", raw: (b) => b.share },
    ], list, (b) => b.budget)),
  ];
}

const PAGES = {
  overview, attribution, "unit-economics": unitEconomics, templates, anatomy, "prompt-cache": promptCache, budgets,
};

// ---------- rendering, navigation, the key form ----------

let renderSeq = 0;

async function render() {
  const seq = ++renderSeq;
  document.body.dataset.ready = "0";
  const page = currentPage();
  const [seconds, bucket] = RANGES[rangeName()];
  const until = Math.ceil(Date.now() / 1000);
  window_ = { since: until - seconds, until, bucket };
  Object.assign(document.body.dataset, { page, since: String(window_.since), until: String(until), bucket });
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  document.querySelectorAll("#range button").forEach((b) => b.classList.toggle("active", b.dataset.range === rangeName()));
  const main = document.getElementById("main");
  try {
    const content = await PAGES[page]();
    if (seq !== renderSeq) return;
    main.replaceChildren(...content.flat());
    document.body.dataset.error = "";
    document.getElementById("key-form").hidden = !sessionStorage.getItem(KEY_STORE);
  } catch (error) {
    if (seq !== renderSeq) return;
    const message = error && error.message ? error.message : String(error);
    if (error instanceof AuthError) showKeyForm(message);
    main.replaceChildren(h("p", { className: "error", dataset: { metric: "error" } }, message));
    document.body.dataset.error = message;
  }
  document.title = `FareGate · ${document.querySelector(`#nav a[data-page="${page}"]`).textContent}`;
  document.body.dataset.ready = "1";
}

function showKeyForm(message) {
  document.getElementById("key-form").hidden = false;
  document.getElementById("key-message").textContent = message;
  document.getElementById("key-input").focus();
}

function setup() {
  document.getElementById("nav").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-page]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    navigate(new URL(link.href).pathname, { range: rangeName() });
  });
  document.getElementById("range").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-range]");
    if (!button) return;
    const q = params();
    q.set("range", button.dataset.range);
    history.pushState(null, "", `${location.pathname}?${q}`);
    render();
  });
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key-input");
    if (input.value.trim()) sessionStorage.setItem(KEY_STORE, input.value.trim());
    input.value = "";
    document.getElementById("key-message").textContent = "";
    render();
  });
  document.getElementById("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    document.getElementById("key-message").textContent = "Key forgotten.";
  });
  window.addEventListener("popstate", render);
  render();
}

setup();
