// Customer view (#/customers/REF): search by any identifier (type:value,
// an email, or a profile id); the GCR (identifiers with first and last
// seen, traits, consent per channel, stats, revenue), the event timeline
// (paged with the API's cursor: "Older events" appends the next page), the
// audiences the person is in with since and their audience history
// (entries and past exits with times and reasons, paged), predictions; for
// the privacy role, export and erase (with confirmation).
import { call, can, routes } from "../api.js";
import { h, table, fmtNum, fmtTime, errorBox, section, download } from "../ui.js";

const PAGE = 20;

// normalize turns what a person types into a profile reference: an email
// alone becomes email:..., a phone number phone:...
export function normalize(q) {
  const t = q.trim();
  if (!t || t.includes(":")) return t;
  if (/^[^@\s]+@[^@\s]+$/.test(t)) return `email:${t}`;
  if (/^\+?[\d ()-]{7,}$/.test(t)) return `phone:${t.replace(/[ ()-]/g, "")}`;
  if (/^[0-9A-HJKMNP-TV-Z]{26}$/i.test(t)) return `profile_id:${t.toUpperCase()}`;
  return t;
}

export async function render(main, args) {
  const ref = args[0] || "";
  const input = h("input", { type: "search", testid: "search-identifier", value: ref, size: 40, placeholder: "email:ann@example.com, phone:+45…, user_id:…, cookie:…, or a profile id", required: true });
  const form = h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); location.hash = `#/customers/${encodeURIComponent(normalize(input.value))}`; } },
    input, " ", h("button", { type: "submit", class: "primary", testid: "search-submit" }, "Find"));
  const body = h("div");
  main.append(h("div", { class: "page", testid: "page-customers" }, h("h1", {}, "Customers"), form, body));
  if (ref) await profile(body, ref);
}

async function profile(body, ref) {
  let p;
  try {
    p = await call(routes.profile, { params: { ref } });
  } catch (err) {
    body.append(h("div", { testid: "profile-error" }, errorBox(err)));
    return;
  }
  const ids = Object.entries(p.identifiers || {}).flatMap(([type, vs]) => vs.map((v) => ({ type, ...v })));
  const traits = Object.entries(p.traits || {});
  const consent = Object.entries(p.consent || {});
  const auds = Object.entries(p.audiences || {});
  const preds = Object.entries(p.predictions || {});
  const revenue = Object.entries(p.revenue || {});
  const st = p.stats || {};
  const privacy = h("div");
  if (can(routes.profileExport) || can(routes.erasureCreate)) privacy.append(privacyControls(ref, p));
  const timeline = h("div", { testid: "profile-timeline" });
  const history = h("div", { testid: "profile-audience-history" });
  body.append(h("div", { testid: "profile" },
    h("h2", {}, "Profile ", h("code", { testid: "profile-id" }, p.profile_id)),
    privacy,
    h("div", { class: "grid" },
      section("Identifiers", h("div", { testid: "profile-identifiers" },
        table([["type", (i) => i.type], ["value", (i) => i.value], ["first seen", (i) => fmtTime(i.first_seen)], ["last seen", (i) => fmtTime(i.last_seen)]], ids))),
      section("Traits", h("div", { testid: "profile-traits" },
        table([["trait", ([k]) => k], ["value", ([, v]) => typeof v === "object" ? JSON.stringify(v) : String(v)]], traits))),
      section("Stats", h("div", { testid: "profile-stats" },
        h("dl", {}, h("dt", {}, "first seen"), h("dd", {}, fmtTime(st.first_seen)), h("dt", {}, "last seen"), h("dd", {}, fmtTime(st.last_seen)),
          h("dt", {}, "events"), h("dd", {}, fmtNum(st.total_events))),
        table([["revenue event", ([k]) => k], ["orders", ([, v]) => fmtNum(v.count)], ["total", ([, v]) => fmtNum(v.total)]], revenue))),
      section("Consent", h("div", { testid: "profile-consent" },
        table([["channel", ([c]) => c], ["granted", ([, v]) => h("span", { class: v.granted ? "ok" : "bad" }, v.granted ? "yes" : "no")], ["", ([, v]) => v.default ? "default" : fmtTime(v.updated || v.time)]], consent))),
      section("Audiences", h("div", { testid: "profile-audiences" },
        table([["audience", ([a]) => h("a", { href: `#/audiences/members/${encodeURIComponent(a)}` }, a)], ["since", ([, since]) => fmtTime(since)]], auds))),
      section("Predictions", h("div", { testid: "profile-predictions" },
        table([["model", ([k]) => k], ["value", ([, v]) => typeof v === "object" ? JSON.stringify(v) : fmtNum(v)]], preds))),
      section("Audience history", history)),
    section("Timeline", timeline)));
  await Promise.all([
    pager(timeline, routes.profileEvents, ref, "events", "timeline", "Older events", [
      ["time", (e) => fmtTime(e.timestamp)],
      ["type", (e) => e.type],
      ["event", (e) => e.event || e.name || ""],
      ["source", (e) => e.source || ""],
      ["data", (e) => h("code", { class: "small" }, JSON.stringify(e.properties && Object.keys(e.properties).length ? e.properties : e.traits || {}))],
    ]),
    pager(history, routes.profileAudienceHistory, ref, "history", "history", "Older entries", [
      ["time", (x) => fmtTime(x.time)],
      ["audience", (x) => h("a", { href: `#/audiences/members/${encodeURIComponent(x.audience)}` }, x.audience)],
      ["", (x) => h("span", { class: x.event === "entered" ? "ok" : "bad" }, x.event)],
      ["reason", (x) => reason(x.reason)],
      ["rule", (x) => `v${x.rule_version}`],
    ]),
  ]);
}

// reason says in words why a person entered or left an audience.
function reason(r) {
  if (!r) return "";
  if (r.startsWith("event:") || r === "events") return "their events";
  return { time: "time window passed", backfill: "rule created or changed", merged: "profile merged into another", "audience deleted": "audience deleted", erased: "erased" }[r] || r;
}

// pager draws the newest page of a paged route (key: the answer's list)
// into el; its "older" button appends the next page, from the answer's
// cursor, until there is none. Rows get data-testid name + "-event" or
// name + "-entry"; the button name + "-more".
async function pager(el, route, ref, key, name, older, cols) {
  const rows = [];
  let cursor = "";
  const rowID = name === "timeline" ? "timeline-event" : `${name}-entry`;
  const more = h("button", { type: "button", testid: `${name}-more`, hidden: true, onclick: () => load() }, older);
  const status = h("div");
  const load = async () => {
    more.disabled = true;
    try {
      const res = await call(route, { params: { ref }, query: { limit: PAGE, cursor } });
      rows.push(...(res[key] || []));
      cursor = res.next || "";
      status.replaceChildren();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
    more.disabled = false;
    more.hidden = !cursor;
    el.replaceChildren(table(cols, rows, () => ({ testid: rowID })), status, more);
  };
  await load();
}

function privacyControls(ref, p) {
  const status = h("div");
  const primary = Object.entries(p.identifiers || {}).flatMap(([t, vs]) => vs.map((v) => `${t}:${v.value}`))[0] || ref;
  const exp = async () => {
    try {
      const blob = await call(routes.profileExport, { params: { ref }, as: "blob" });
      download(blob, `profile-${p.profile_id}.json`);
    } catch (err) { status.replaceChildren(errorBox(err)); }
  };
  const confirmBox = h("input", { testid: "erase-confirm", placeholder: `type ${primary} to confirm`, size: 32 });
  const erase = async () => {
    if (confirmBox.value.trim() !== primary) {
      status.replaceChildren(errorBox(`Type ${primary} to confirm the erasure.`));
      return;
    }
    try {
      const res = await call(routes.erasureCreate, { body: { identifier: primary } });
      status.replaceChildren(h("p", { class: "ok", testid: "erase-status" }, `Erasure ${res.id} requested (${res.status || "pending"}).`));
    } catch (err) { status.replaceChildren(errorBox(err)); }
  };
  return section("Privacy",
    can(routes.profileExport) && h("p", {}, h("button", { type: "button", testid: "profile-export", onclick: exp }, "Export this person's data")),
    can(routes.erasureCreate) && h("p", { class: "row" }, "Erase this person: ", confirmBox, " ",
      h("button", { type: "button", class: "danger", testid: "profile-erase", onclick: erase }, "Erase")),
    status);
}
