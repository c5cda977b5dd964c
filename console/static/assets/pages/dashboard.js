// Dashboard: events per second, profiles and merges from /metrics, the
// audiences with their sizes (and size over time), destination health and
// dead letters. The API keeps counters, not history: the console samples
// them every 10 s and keeps the last hour of samples in sessionStorage, so
// the charts cover the time this browser tab has been watching.
import { call, can, routes } from "../api.js";
import { h, table, fmtNum, fmtTime, lineChart, legend, section, errorBox } from "../ui.js";

const KEY = "aurum.dashboard.samples";
const HOUR = 3600 * 1000;
const EVERY = 10000; // each sample is audited (GET /metrics, /v1/audiences): keep it modest
const SLOW = 6; // destinations and dead letters every SLOW samples

// parseMetrics reads the Prometheus text format into {name: total}
// (labels summed).
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    out[m[1]] = (out[m[1]] || 0) + Number(m[3]);
  }
  return out;
}

function load() {
  try { return JSON.parse(sessionStorage.getItem(KEY)) || []; } catch { return []; }
}

function save(samples) {
  sessionStorage.setItem(KEY, JSON.stringify(samples));
}

async function sample() {
  const [text, aud] = await Promise.all([
    can(routes.metrics) ? call(routes.metrics, { as: "text" }) : Promise.resolve(""),
    call(routes.audiences),
  ]);
  const m = parseMetrics(text);
  const sizes = {};
  for (const a of aud.audiences || []) sizes[a.name] = a.size;
  return {
    t: Date.now(),
    events: m.aurum_apply_events_total ?? null,
    profiles: m.aurum_identity_profiles_created_total === undefined ? null : m.aurum_identity_profiles_created_total - (m.aurum_identity_merges_total || 0),
    merges: m.aurum_identity_merges_total ?? null,
    sizes,
    audiences: aud.audiences || [],
  };
}

export async function render(main) {
  const root = h("div", { class: "page", testid: "page-dashboard" }, h("h1", {}, "Dashboard"));
  main.append(root);
  const body = h("div", { class: "grid" });
  root.append(body);
  let samples = load();
  let stopped = false;
  let dests = [], dead = [], ticks = 0;
  const draw = async (latest) => {
    const rate = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i];
      if (a.events === null || b.events === null || b.events < a.events) continue;
      rate.push([b.t, (b.events - a.events) / ((b.t - a.t) / 1000)]);
    }
    const names = latest.audiences.map((a) => a.name).slice(0, 6);
    const sizeSeries = names.map((n) => ({ name: n, points: samples.filter((x) => x.sizes[n] !== undefined).map((x) => [x.t, x.sizes[n]]) }));
    if (ticks++ % SLOW === 0) {
      try { dests = (await call(routes.destinations)).destinations || []; } catch { /* shown as none */ }
      try { dead = (await call(routes.deadLetters, { query: { limit: 10 } })).dead_letters || []; } catch { /* shown as none */ }
    }
    const stat = (label, v, id) => h("div", { class: "stat", testid: id }, h("span", { class: "big" }, fmtNum(v)), h("span", { class: "muted" }, label));
    body.replaceChildren(
      h("div", { class: "stats" },
        stat("events applied", latest.events, "stat-events"),
        stat("profiles", latest.profiles, "stat-profiles"),
        stat("merges", latest.merges, "stat-merges"),
        stat("audiences", latest.audiences.length, "stat-audiences"),
        stat(dead.length >= 10 ? "dead letters (10 or more)" : "dead letters", dead.length, "stat-deadletters")),
      section("Events per second (last hour)", h("div", { testid: "chart-events" }, lineChart([{ name: "events/s", points: rate }], { unit: "" }))),
      section("Audience sizes over time", h("div", { testid: "chart-audiences" }, lineChart(sizeSeries)), legend(sizeSeries)),
      section("Audiences", table([["name", (a) => h("a", { href: `#/audiences/members/${encodeURIComponent(a.name)}` }, a.name)], ["size", (a) => fmtNum(a.size)], ["updated", (a) => fmtTime(a.updated)]], latest.audiences)),
      section("Destination health", table([
        ["name", (d) => d.name], ["kind", (d) => d.kind],
        ["delivered", (d) => fmtNum(d.stats && d.stats.delivered)], ["failed attempts", (d) => fmtNum(d.stats && d.stats.failed_attempts)], ["dead-lettered", (d) => fmtNum(d.stats && d.stats.dead_lettered)],
        ["status", (d) => { const st = d.stats || {}; const bad = (st.dead_lettered || 0) > 0 || !!st.last_error || st.running === false; return h("span", { class: bad ? "bad" : "ok" }, bad ? "failing" : "healthy"); }],
      ], dests)),
      section("Dead letters", table([["seq", (d) => d.seq], ["received", (d) => fmtTime(d.received)], ["source", (d) => d.source], ["reason", (d) => d.reason]], dead)));
  };
  const tick = async () => {
    try {
      const x = await sample();
      samples = samples.filter((p) => p.t > x.t - HOUR);
      samples.push({ t: x.t, events: x.events, profiles: x.profiles, merges: x.merges, sizes: x.sizes });
      save(samples);
      if (!stopped) await draw(x);
    } catch (err) {
      if (!stopped) body.replaceChildren(errorBox(err));
    }
  };
  await tick();
  const timer = setInterval(tick, EVERY);
  return () => { stopped = true; clearInterval(timer); };
}
