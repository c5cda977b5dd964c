// Access (admin): API tokens (create, revoke), users (create with their
// authenticator URI, delete) and the audit log (newest first, paged).
import { call, routes } from "../api.js";
import { h, table, fmtTime, errorBox, section } from "../ui.js";

const roles = ["viewer", "editor", "privacy", "admin"];

export async function render(main) {
  const root = h("div", { class: "page", testid: "page-access" }, h("h1", {}, "Access"));
  main.append(root);
  const status = h("div");
  const reload = async () => { main.replaceChildren(); await render(main); };
  const act = (fn) => async (ev) => {
    if (ev) ev.preventDefault();
    try { await fn(); } catch (err) { status.replaceChildren(errorBox(err)); }
  };
  const [{ tokens = [] }, { users = [] }, audit] = await Promise.all([
    call(routes.tokens), call(routes.users), call(routes.audit, { query: { newest: "true", limit: 25 } })]);

  const tName = h("input", { testid: "token-name", required: true, placeholder: "ci-reader" });
  const tRole = h("select", { testid: "token-role" }, roles.map((r) => h("option", { value: r }, r)));
  const tExp = h("input", { testid: "token-expires", placeholder: "expires: 720h or RFC 3339 (optional)" });
  const secret = h("div");
  const createToken = act(async () => {
    const res = await call(routes.tokenCreate, { body: { name: tName.value.trim(), role: tRole.value, expires: tExp.value.trim() } });
    secret.replaceChildren(h("p", { class: "ok", testid: "token-secret" }, "Token (shown once): ", h("code", {}, res.token || res.secret || JSON.stringify(res))));
  });
  const uName = h("input", { testid: "user-name", required: true, placeholder: "ann" });
  const uPass = h("input", { type: "password", testid: "user-password", required: true, autocomplete: "new-password" });
  const uRole = h("select", { testid: "user-role" }, roles.map((r) => h("option", { value: r }, r)));
  const otp = h("div");
  const createUser = act(async () => {
    const res = await call(routes.userCreate, { body: { name: uName.value.trim(), password: uPass.value, role: uRole.value } });
    otp.replaceChildren(h("p", { class: "ok", testid: "user-otpauth" }, "Add this to the user's authenticator app (shown once): ", h("code", {}, res.otpauth_uri)));
  });

  const entries = (audit.entries || []).slice().sort((a, b) => b.seq - a.seq);
  const auditBody = h("div");
  const drawAudit = () => auditBody.replaceChildren(table([
    ["time", (e) => fmtTime(e.time)], ["actor", (e) => e.actor], ["role", (e) => e.role], ["action", (e) => e.action],
    ["object", (e) => e.object ? JSON.stringify(e.object) : ""], ["status", (e) => e.status], ["result", (e) => e.result], ["detail", (e) => e.detail || ""],
  ], entries, () => ({ testid: "audit-row" })));
  drawAudit();

  root.append(status,
    section("API tokens",
      table([["id", (t) => t.id], ["name", (t) => t.name], ["role", (t) => t.role], ["created", (t) => fmtTime(t.created)], ["expires", (t) => fmtTime(t.expires)],
        ["", (t) => h("button", { type: "button", class: "link danger", testid: "token-revoke", onclick: act(async () => { if (confirm(`Revoke token ${t.name}?`)) { await call(routes.tokenRevoke, { params: { id: t.id } }); await reload(); } }) }, "revoke")]],
      tokens, () => ({ testid: "token-row" })),
      h("form", { class: "row", onsubmit: createToken }, tName, " ", tRole, " ", tExp, " ", h("button", { type: "submit", class: "primary", testid: "token-create" }, "Create token")),
      secret),
    section("Users",
      table([["name", (u) => u.name], ["role", (u) => u.role], ["created", (u) => fmtTime(u.created)],
        ["", (u) => h("button", { type: "button", class: "link danger", testid: "user-delete", onclick: act(async () => { if (confirm(`Delete user ${u.name}?`)) { await call(routes.userDelete, { params: { name: u.name } }); await reload(); } }) }, "delete")]],
      users, () => ({ testid: "user-row" })),
      h("form", { class: "row", onsubmit: createUser }, uName, " ", uPass, " ", uRole, " ", h("button", { type: "submit", class: "primary", testid: "user-create" }, "Create user")),
      otp),
    section("Audit log (the newest 25; aurum audit lists more)", auditBody));
}
