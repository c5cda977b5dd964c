// The console's entry point: the session, the sign-in page, the navigation
// and a hash router (#/dashboard, #/audiences, #/customers, ...): every page
// is a module of pages/ whose render(main, args) draws it.
import { call, can, routes, setSession, session, APIError, path } from "./api.js";
import { h, errorBox } from "./ui.js";
import * as dashboard from "./pages/dashboard.js";
import * as audiences from "./pages/audiences.js";
import * as customers from "./pages/customers.js";
import * as destinations from "./pages/destinations.js";
import * as access from "./pages/access.js";

const pages = [
  { id: "dashboard", title: "Dashboard", page: dashboard, route: routes.audiences },
  { id: "audiences", title: "Audiences", page: audiences, route: routes.audiences },
  { id: "customers", title: "Customers", page: customers, route: routes.profile },
  { id: "destinations", title: "Destinations", page: destinations, route: routes.destinations },
  { id: "access", title: "Access", page: access, route: routes.tokens },
];

const main = document.getElementById("main");
let stopPage = null; // the current page's cleanup (timers)

function nav() {
  const n = document.getElementById("nav");
  n.replaceChildren(...pages.filter((p) => can(p.route)).map((p) =>
    h("a", { href: `#/${p.id}`, testid: `nav-${p.id}`, id: `nav-${p.id}` }, p.title)));
  const me = session();
  document.getElementById("who").replaceChildren(
    h("span", { testid: "whoami" }, `${me.name} · ${me.role}`), " ",
    h("button", { type: "button", class: "link", testid: "signout", onclick: signOut }, "Sign out"));
  document.getElementById("top").hidden = false;
}

async function route() {
  if (stopPage) { stopPage(); stopPage = null; }
  if (!session()) return;
  const [id, ...rest] = (location.hash.replace(/^#\/?/, "") || "").split("/");
  const allowed = pages.filter((p) => can(p.route));
  const p = allowed.find((x) => x.id === id) || allowed[0];
  if (!p) { main.replaceChildren(errorBox("This role may see no page of the console.")); return; }
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.id === `nav-${p.id}`);
  document.title = `${p.title} · Aurum`;
  const args = rest.map(decodeURIComponent);
  main.replaceChildren();
  try {
    stopPage = (await p.page.render(main, args)) || null;
  } catch (err) {
    main.append(errorBox(err));
  }
}

async function signOut() {
  try { await call(routes.sessionDelete); } catch { /* signed out anyway */ }
  setSession(null);
  location.hash = "";
  showSignIn();
}

async function signedIn() {
  setSession(await call(routes.sessionGet));
  nav();
  await route();
}

function showSignIn(message) {
  document.getElementById("top").hidden = true;
  const status = h("p", { testid: "login-error", class: "error", role: "alert", hidden: !message }, message || "");
  const fail = (err) => {
    status.textContent = err instanceof APIError && err.status === 401 ? "Sign-in refused: " + err.message : err.message;
    status.hidden = false;
  };
  const submit = (body) => async (ev) => {
    ev.preventDefault();
    status.hidden = true;
    try {
      await call(routes.sessionCreate, { body: body() });
      await signedIn();
    } catch (err) { fail(err); }
  };
  const token = h("input", { type: "password", name: "token", testid: "login-token", autocomplete: "off", placeholder: "API token", required: true });
  const name = h("input", { name: "name", testid: "login-name", autocomplete: "username", placeholder: "name", required: true });
  const password = h("input", { type: "password", name: "password", testid: "login-password", autocomplete: "current-password", placeholder: "password", required: true });
  const totp = h("input", { name: "totp", testid: "login-totp", inputmode: "numeric", autocomplete: "one-time-code", placeholder: "6-digit code", required: true });
  const sso = h("div", { class: "sso" });
  const userForm = h("form", { class: "card", onsubmit: submit(() => ({ name: name.value, password: password.value, totp: totp.value })) },
    h("h2", {}, "Sign in"),
    h("label", {}, "Name", name), h("label", {}, "Password", password), h("label", {}, "Code (authenticator app)", totp),
    h("button", { type: "submit", testid: "login-user-submit" }, "Sign in"));
  const tokenForm = h("form", { class: "card", onsubmit: submit(() => ({ token: token.value })) },
    h("h2", {}, "Operators: API token"),
    h("label", {}, "Token", token),
    h("button", { type: "submit", testid: "login-submit" }, "Sign in with token"));
  main.replaceChildren(h("div", { class: "signin" }, h("h1", {}, "Aurum"), status, sso, userForm, tokenForm));
  call(routes.sessionProviders).then((res) => {
    if (res && res.oidc) {
      sso.append(h("a", { class: "button primary", href: path(routes.oidcLogin), testid: "login-sso" }, "Sign in with single sign-on"),
        res.oidc_issuer && h("p", { class: "muted" }, `through ${res.oidc_issuer}`));
    }
    if (res && res.password === false) userForm.hidden = true;
    if (res && res.token === false) tokenForm.hidden = true;
  }).catch(() => { /* the forms stay */ });
}

window.addEventListener("hashchange", route);
window.addEventListener("aurum:signedout", () => { if (session()) { setSession(null); showSignIn("Your session ended; sign in again."); } });

// What the sign-in page says when single sign-on failed: the server sends
// the browser back to /?sso_error=REASON (a code, never a message, so a link
// cannot make the page say something else).
const ssoErrors = {
  no_role: "Single sign-on: your account has no Aurum role, so it has no access. Ask an administrator to give you one.",
  refused: "Single sign-on: the provider refused the sign-in.",
  expired: "Single sign-on: no sign-in was in progress in this browser, or it took over 10 minutes. Try again.",
  state: "Single sign-on: the answer did not match this browser's sign-in. Try again.",
  failed: "Single sign-on failed. Try again, or sign in another way.",
  unavailable: "Single sign-on is unavailable right now. Try again later, or sign in another way.",
};

(async () => {
  const reason = new URLSearchParams(location.search).get("sso_error");
  if (reason !== null) history.replaceState(null, "", location.pathname + location.hash); // a reload does not repeat it
  try {
    await signedIn();
  } catch (err) {
    const sso = reason === null ? "" : ssoErrors[reason] || ssoErrors.failed;
    showSignIn(sso || (err instanceof APIError && err.status === 401 ? "" : err.message));
  }
})();
