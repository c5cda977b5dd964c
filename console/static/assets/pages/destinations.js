// Destinations: the list with delivery statistics, create (editors and
// admins), delete, and the dead letters of ingestion.
import { call, can, routes } from "../api.js";
import { h, table, fmtNum, fmtTime, errorBox, section } from "../ui.js";

const kinds = ["webhook", "hubspot", "meta_audience", "google_customer_match", "salesforce", "smtp", "sms"];
const channels = ["email", "sms", "push", "ads", "web", "none"];

export async function render(main) {
  const root = h("div", { class: "page", testid: "page-destinations" }, h("h1", {}, "Destinations"));
  main.append(root);
  const [{ destinations = [] }, { dead_letters = [] }] = await Promise.all([call(routes.destinations), call(routes.deadLetters, { query: { limit: 50 } })]);
  const status = h("div");
  const del = async (d) => {
    if (!confirm(`Delete destination ${d.name}?`)) return;
    try { await call(routes.destinationDelete, { params: { name: d.name } }); main.replaceChildren(); await render(main); }
    catch (err) { status.replaceChildren(errorBox(err)); }
  };
  root.append(status,
    section("Destinations", table([
      ["name", (d) => d.name], ["kind", (d) => d.kind], ["channel", (d) => d.channel || ""],
      ["audiences", (d) => (d.audiences || []).join(", ")],
      ["delivered", (d) => fmtNum(d.stats && d.stats.delivered)],
      ["failed attempts", (d) => fmtNum(d.stats && d.stats.failed_attempts)],
      ["dead-lettered", (d) => fmtNum(d.stats && d.stats.dead_lettered)],
      ["skipped (no consent)", (d) => fmtNum(d.stats && d.stats.skipped)],
      ["lag", (d) => fmtNum(d.stats && d.stats.lag)],
      ["last error", (d) => d.stats && d.stats.last_error ? `${fmtTime(d.stats.last_error_time)} ${d.stats.last_error}` : ""],
      ["", (d) => can(routes.destinationDelete) && h("button", { type: "button", class: "link danger", testid: "destination-delete", onclick: () => del(d) }, "delete")],
    ], destinations, () => ({ testid: "destination-row" }))));
  if (can(routes.destinationCreate)) root.append(createForm(main, status));
  root.append(section("Dead letters (ingestion)", table([
    ["seq", (d) => d.seq], ["received", (d) => fmtTime(d.received)], ["source", (d) => d.source],
    ["field", (d) => d.field || ""], ["reason", (d) => d.reason],
    ["payload", (d) => h("code", { class: "small" }, d.payload ? JSON.stringify(d.payload).slice(0, 200) : "")],
  ], dead_letters, () => ({ testid: "deadletter-row" }))));
}

function createForm(main, status) {
  const f = {
    name: h("input", { testid: "destination-name", required: true, placeholder: "crm-hook" }),
    kind: h("select", { testid: "destination-kind" }, kinds.map((k) => h("option", { value: k }, k))),
    url: h("input", { testid: "destination-url", placeholder: "https://… (webhook)", size: 36 }),
    secret: h("input", { type: "password", testid: "destination-secret", placeholder: "signing secret (webhook)", autocomplete: "off" }),
    audiences: h("input", { testid: "destination-audiences", placeholder: "audience names, comma-separated", size: 30 }),
    channel: h("select", { testid: "destination-channel" }, h("option", { value: "" }, "(the kind's channel)"), channels.map((c) => h("option", { value: c }, c))),
    config: h("textarea", { testid: "destination-config", rows: 3, class: "code", placeholder: '{"…": "…"} (connectors: see docs/connectors.md)' }),
  };
  const submit = async (ev) => {
    ev.preventDefault();
    const body = {
      name: f.name.value.trim(), kind: f.kind.value, channel: f.channel.value,
      audiences: f.audiences.value.split(",").map((x) => x.trim()).filter(Boolean),
    };
    if (f.kind.value === "webhook") { body.url = f.url.value.trim(); body.secret = f.secret.value; }
    else if (f.config.value.trim()) {
      try { body.config = JSON.parse(f.config.value); } catch (err) { status.replaceChildren(errorBox(`config: not JSON: ${err.message}`)); return; }
    }
    try {
      await call(routes.destinationCreate, { body });
      main.replaceChildren();
      await render(main);
    } catch (err) { status.replaceChildren(errorBox(err)); }
  };
  return section("New destination", h("form", { class: "stack", onsubmit: submit, testid: "destination-form" },
    h("label", {}, "Name ", f.name), h("label", {}, "Kind ", f.kind), h("label", {}, "Channel ", f.channel),
    h("label", {}, "Audiences ", f.audiences), h("label", {}, "URL ", f.url), h("label", {}, "Secret ", f.secret),
    h("label", {}, "Config ", f.config),
    h("button", { type: "submit", class: "primary", testid: "destination-create" }, "Create")));
}
