// Dashboard: events per second, profiles, merges and audience sizes over
// the last hour from the node's own stats history (GET /v1/stats/history:
// the node samples every 10 s whether or not a tab is open; the history is
// in the node's memory, so a restart starts it empty), the audiences with
// their sizes, destination health and dead letters.
import { call, routes } from "../api.js";
import { h, table, fmtNum, fmtTime, lineChart, legend, section, errorBox } from "../ui.js";

const HOUR = 3600 * 1000;
const SLOW = 6; // the audiences, destinations and dead letters every SLOW refreshes
const MAX_AUDIENCES = 6; // lines on the audience chart: the largest now

// seriesOf turns samples ({time, events_per_second, ...}) into chart series.
export function seriesOf(samples) {
  const pts = (f) => samples.map((x) => [x.t, f(x)]);
  const events = [
    { name: "events applied/s", points: pts((x) => x.events_per_second) },
    { name: "ingest accepted/s", points: pts((x) => x.ingested_per_second) },
  ];
  const last = samples.length ? samples[samples.length - 1].audiences || {} : {};
  const names = Object.keys(last).sort((a, b) => last[b] - last[a] || a.localeCompare(b)).slice(0, MAX_AUDIENCES);
  const sizes = names.map((n) => ({ name: n, points: samples.filter((x) => x.audiences && x.audiences[n] !== undefined).map((x) => [x.t, x.audiences[n]]) }));
  return { events, sizes };
}

export async function render(main) {
  const root = h("div", { class: "page", testid: "page-dashboard" }, h("h1", {}, "Dashboard"));
  main.append(root);
  const body = h("div", { class: "grid" });
  root.append(body);
  let samples = [];
  let stopped = false, timer = null;
  let audiences = [], dests = [], dead = [], ticks = 0;
  const fetchHistory = async () => {
    const since = samples.length ? samples[samples.length - 1].time : undefined;
    const res = await call(routes.statsHistory, { query: since ? { since } : {} });
    for (const x of res.samples || []) samples.push({ ...x, t: Date.parse(x.time) });
    if (samples.length) {
      const newest = samples[samples.length - 1].t;
      samples = samples.filter((x) => x.t > newest - HOUR);
    }
    return res.interval_seconds || 10;
  };
  const draw = () => {
    const latest = samples.length ? samples[samples.length - 1] : null;
    const { events, sizes } = seriesOf(samples);
    const stat = (label, v, id) => h("div", { class: "stat", testid: id }, h("span", { class: "big" }, fmtNum(v)), h("span", { class: "muted" }, label));
    const chart = (id, series) => h("div", { testid: id, "data-samples": samples.length }, lineChart(series));
    body.replaceChildren(
      h("div", { class: "stats" },
        stat("events applied/s", latest && +latest.events_per_second.toFixed(2), "stat-events"),
        stat("profiles (since start)", latest && latest.profiles, "stat-profiles"),
        stat("merges (since start)", latest && latest.merges, "stat-merges"),
        stat("audiences", audiences.length, "stat-audiences"),
        stat(dead.length >= 10 ? "dead letters (10 or more)" : "dead letters", dead.length, "stat-deadletters")),
      section("Events per second (last hour)", chart("chart-events", events), legend(events)),
      section("Audience sizes over time", chart("chart-audiences", sizes), legend(sizes)),
      section("Audiences", table([["name", (a) => h("a", { href: `#/audiences/members/${encodeURIComponent(a.name)}` }, a.name)], ["size", (a) => fmtNum(a.size)], ["updated", (a) => fmtTime(a.updated)]], audiences)),
      section("Destination health", table([
        ["name", (d) => d.name], ["kind", (d) => d.kind],
        ["delivered", (d) => fmtNum(d.stats && d.stats.delivered)], ["failed attempts", (d) => fmtNum(d.stats && d.stats.failed_attempts)], ["dead-lettered", (d) => fmtNum(d.stats && d.stats.dead_lettered)],
        ["status", (d) => { const st = d.stats || {}; const bad = (st.dead_lettered || 0) > 0 || !!st.last_error || st.running === false; return h("span", { class: bad ? "bad" : "ok" }, bad ? "failing" : "healthy"); }],
      ], dests)),
      section("Dead letters", table([["seq", (d) => d.seq], ["received", (d) => fmtTime(d.received)], ["source", (d) => d.source], ["reason", (d) => d.reason]], dead)));
  };
  const tick = async () => {
    let every = 10;
    try {
      every = await fetchHistory();
      if (ticks++ % SLOW === 0) {
        audiences = (await call(routes.audiences)).audiences || [];
        try { dests = (await call(routes.destinations)).destinations || []; } catch { /* shown as none */ }
        try { dead = (await call(routes.deadLetters, { query: { limit: 10 } })).dead_letters || []; } catch { /* shown as none */ }
      }
      if (!stopped) draw();
    } catch (err) {
      if (!stopped) body.replaceChildren(errorBox(err));
    }
    // Refresh at the node's sampling interval (at least every second).
    if (!stopped) timer = setTimeout(tick, Math.max(1, every) * 1000);
  };
  await tick();
  return () => { stopped = true; clearTimeout(timer); };
}
