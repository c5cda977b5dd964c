// Audiences: the list with sizes (#/audiences), the builder (#/audiences/new,
// #/audiences/edit/NAME) with a visual editor writing the rule text, a text
// editor showing errors at their position and a live size preview, and the
// members with search and export (#/audiences/members/NAME).
import { call, can, routes, APIError } from "../api.js";
import { h, table, fmtNum, fmtTime, errorBox, section, download } from "../ui.js";
import { editor, newCondition, toRule } from "../builder.js";

export async function render(main, args) {
  const [view, name] = args;
  if (view === "new" && can(routes.audienceCreate)) return builder(main, null);
  if (view === "edit" && name && can(routes.audienceReplace)) return builder(main, name);
  if (view === "members" && name) return members(main, name);
  return list(main);
}

async function list(main) {
  const { audiences = [] } = await call(routes.audiences);
  const status = h("div");
  const del = async (a) => {
    if (!confirm(`Delete audience ${a.name}? Its members leave it and destinations get the exits.`)) return;
    try { await call(routes.audienceDelete, { params: { name: a.name } }); location.hash = "#/audiences"; list(main.replaceChildren() || main); }
    catch (err) { status.replaceChildren(errorBox(err)); }
  };
  main.append(h("div", { class: "page", testid: "page-audiences" },
    h("h1", {}, "Audiences"),
    can(routes.audienceCreate) && h("p", {}, h("a", { class: "button primary", href: "#/audiences/new", testid: "audience-new" }, "New audience")),
    status,
    table([
      ["name", (a) => h("a", { href: `#/audiences/members/${encodeURIComponent(a.name)}`, testid: "audience-name-cell" }, a.name)],
      ["size", (a) => h("span", { testid: "audience-size" }, fmtNum(a.size))],
      ["rule", (a) => h("code", { class: "rule" }, a.rule)],
      ["updated", (a) => fmtTime(a.updated)],
      ["", (a) => [
        can(routes.audienceReplace) && h("a", { href: `#/audiences/edit/${encodeURIComponent(a.name)}`, testid: "audience-edit" }, "edit"), " ",
        can(routes.audienceDelete) && h("button", { type: "button", class: "link danger", testid: "audience-delete", onclick: () => del(a) }, "delete")]],
    ], audiences, () => ({ testid: "audience-row" }))));
}

// caret returns the rule's line at the error with a caret under its column.
function caret(rule, line, column) {
  const text = rule.split("\n")[line - 1] ?? "";
  return `${text}\n${" ".repeat(Math.max(0, column - 1))}^`;
}

// offset converts a 1-based line and column (code points) to a UTF-16
// offset in rule, for the textarea's selection.
function offset(rule, line, column) {
  const lines = rule.split("\n");
  let off = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) off += lines[i].length + 1;
  const cps = Array.from(lines[line - 1] || "").slice(0, column - 1).join("");
  return off + cps.length;
}

async function builder(main, editing) {
  let existing = null;
  if (editing) existing = await call(routes.audience, { params: { name: editing } });
  const { audiences = [] } = await call(routes.audiences);
  const names = audiences.map((a) => a.name).filter((n) => n !== editing);
  const state = { conds: existing ? [] : [newCondition("count")], join: "and" };
  const name = h("input", { testid: "audience-name", value: existing ? existing.name : "", disabled: !!existing, placeholder: "e.g. high-spenders", required: true });
  const description = h("input", { testid: "audience-description", value: existing ? existing.description || "" : "", placeholder: "what it is for", size: 40 });
  const rule = h("textarea", { testid: "rule-text", rows: 4, spellcheck: "false", class: "code" });
  rule.value = existing ? existing.rule : toRule(state.conds, state.join);
  const ruleError = h("pre", { testid: "rule-error", class: "error", hidden: true });
  const size = h("span", { testid: "preview-size", class: "big" }, "—");
  const margin = h("span", { testid: "preview-margin", class: "muted" });
  const status = h("div");
  const handNote = h("p", { class: "muted", hidden: !existing }, "The text was written by hand: changing the visual editor rewrites it.");

  let seq = 0, timer = null;
  const showError = (err) => {
    const b = err.body || {};
    if (b.field === "rule" && b.line) {
      ruleError.textContent = `line ${b.line}, column ${b.column}: ${b.reason}\n${caret(rule.value, b.line, b.column)}`;
      ruleError.dataset.line = b.line;
      ruleError.dataset.column = b.column;
      ruleError.hidden = false;
      const at = offset(rule.value, b.line, b.column);
      rule.setSelectionRange(at, Math.min(rule.value.length, at + 1));
      return true;
    }
    return false;
  };
  const preview = async () => {
    const mine = ++seq;
    const text = rule.value.trim();
    if (!text) { size.textContent = "—"; margin.textContent = ""; return; }
    try {
      const res = await call(routes.audiencePreview, { body: { rule: text } });
      if (mine !== seq) return;
      ruleError.hidden = true;
      size.textContent = fmtNum(res.size);
      size.dataset.size = res.size;
      margin.textContent = res.exact ? ` exact, of ${fmtNum(res.profiles)} profiles` : ` ± ${fmtNum(res.margin)} (95 %), estimated from ${fmtNum(res.evaluated)} of ${fmtNum(res.profiles)} profiles`;
    } catch (err) {
      if (mine !== seq) return;
      size.textContent = "—";
      delete size.dataset.size;
      margin.textContent = "";
      if (!showError(err)) status.replaceChildren(errorBox(err));
    }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(preview, 300); };
  const vis = editor(state, () => { rule.value = toRule(state.conds, state.join); handNote.hidden = true; schedule(); }, names);
  rule.addEventListener("input", () => { handNote.hidden = false; schedule(); });

  const save = async (ev) => {
    ev.preventDefault();
    status.replaceChildren();
    const body = { name: name.value.trim(), description: description.value.trim(), rule: rule.value.trim() };
    try {
      if (existing) await call(routes.audienceReplace, { params: { name: existing.name }, body });
      else await call(routes.audienceCreate, { body });
      location.hash = "#/audiences";
    } catch (err) {
      if (!showError(err)) status.replaceChildren(errorBox(err));
    }
  };
  main.append(h("form", { class: "page", testid: "page-builder", onsubmit: save },
    h("h1", {}, existing ? `Edit ${existing.name}` : "New audience"),
    h("div", { class: "row" }, h("label", {}, "Name ", name), h("label", {}, "Description ", description)),
    section("Visual editor", vis.el),
    section("Rule", handNote, rule, ruleError),
    section("Live preview", h("p", {}, size, margin)),
    status,
    h("p", {}, h("button", { type: "submit", class: "primary", testid: "audience-save" }, "Save"), " ", h("a", { href: "#/audiences" }, "Cancel"))));
  preview();
  return () => clearTimeout(timer);
}

// members lists the audience's members page by page; the search box asks
// the server (members?q=): type:value finds that person exactly, anything
// else is a prefix of an identifier (an email, a user id, ...).
async function members(main, name) {
  const info = await call(routes.audience, { params: { name } });
  let next = "", all = [], q = "", seq = 0, timer = null;
  const search = h("input", { type: "search", testid: "members-search", size: 36, placeholder: "search: email:ann@example.com, or the start of any identifier" });
  const body = h("div");
  const note = h("p", { class: "muted", testid: "members-note" });
  const more = h("button", { type: "button", testid: "members-more", onclick: () => page(seq) }, "Load more");
  const channel = h("select", { testid: "export-channel", "aria-label": "export for channel" },
    ["email", "sms", "push", "ads", "web", "none"].map((c) => h("option", { value: c }, c)));
  const format = h("select", { testid: "export-format", "aria-label": "export format" }, ["csv", "json", "ndjson", "xml"].map((f) => h("option", { value: f }, f)));
  const status = h("div");
  const draw = () => {
    body.replaceChildren(table([
      ["profile", (m) => h("a", { href: `#/customers/${encodeURIComponent("profile_id:" + m.profile_id)}`, testid: "member-link" }, m.profile_id)],
      ["identifiers", (m) => Object.entries(m.identifiers || {}).map(([t, vs]) => vs.map((v) => h("span", { class: "chip" }, `${t}:${v}`)))],
      ["since", (m) => fmtTime(m.since)],
    ], all, () => ({ testid: "member-row" })));
    more.hidden = !next;
    more.textContent = q ? "Search further" : "Load more";
  };
  // page loads the next page of the list or of the search; mine is the
  // search it belongs to (a newer search drops an older one's answers).
  const page = async (mine) => {
    try {
      const res = await call(routes.audienceMembers, { params: { name }, query: { identifiers: "true", limit: 100, cursor: next, q } });
      if (mine !== seq) return;
      all = all.concat(res.members || []);
      next = res.next || "";
      note.textContent = !q ? "" : res.exact ? `exact match on ${q}` :
        `${fmtNum(all.length)} found${next ? " so far" : ""} among members whose identifiers start with "${q}"`;
      status.replaceChildren();
      draw();
    } catch (err) { if (mine === seq) status.replaceChildren(errorBox(err)); }
  };
  const restart = () => {
    clearTimeout(timer);
    const mine = ++seq;
    q = search.value.trim();
    next = ""; all = [];
    page(mine);
  };
  const exp = async () => {
    try {
      const blob = await call(routes.audienceExport, { params: { name }, query: { format: format.value, channel: channel.value }, as: "blob" });
      download(blob, `${name}.${format.value}`);
    } catch (err) { status.replaceChildren(errorBox(err)); }
  };
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(restart, 300); });
  search.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); restart(); } });
  main.append(h("div", { class: "page", testid: "page-members" },
    h("h1", {}, `Audience ${info.name}`),
    h("p", {}, h("code", { class: "rule" }, info.rule), " · ", h("strong", {}, fmtNum(info.size)), " members"),
    h("p", { class: "row" }, search, " Export for ", channel, " as ", format, " ", h("button", { type: "button", testid: "audience-export", onclick: exp }, "Export")),
    note, status, body, more));
  await page(seq);
  return () => clearTimeout(timer);
}
