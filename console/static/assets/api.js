// The console's one way to the server: call() builds a request from a
// route of routes.js, sends it with the session cookie (and, when it
// changes something, the X-Aurum-CSRF header carrying the aurum_csrf
// cookie), and returns the decoded JSON or throws an APIError.
import { routes } from "./routes.js";

let me = null; // the signed-in session: {name, role, expires}

export function session() { return me; }
export function setSession(s) { me = s; }

// can reports whether the signed-in role may call route r (admin may call
// every route), as the API's route table says.
export function can(r) {
  if (r.access === "public") return true;
  if (!me) return false;
  return me.role === "admin" || (r.roles || []).includes(me.role);
}

export class APIError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function csrfToken() {
  for (const c of document.cookie.split(";")) {
    const [k, v] = c.trim().split("=");
    if (k === "aurum_csrf") return decodeURIComponent(v || "");
  }
  return "";
}

// path fills a route's {wildcards} from params.
export function path(r, params = {}, query = null) {
  const pattern = r.route.split(" ")[1];
  let p = pattern.replace(/\{(\w+)\}/g, (_, k) => {
    if (params[k] === undefined || params[k] === "") throw new Error(`missing ${k} for ${r.route}`);
    return encodeURIComponent(params[k]);
  });
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) p += "?" + s;
  }
  return p;
}

// call sends one request: opts.params fill the path, opts.query the query
// string, opts.body is sent as JSON; opts.as is "json" (default), "text"
// or "blob".
export async function call(r, opts = {}) {
  const method = r.route.split(" ")[0];
  const headers = { Accept: "application/json" };
  const init = { method, credentials: "same-origin", headers };
  if (method !== "GET") headers["X-Aurum-CSRF"] = csrfToken();
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const res = await fetch(path(r, opts.params, opts.query), init);
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch { body = { error: `HTTP ${res.status} ${res.statusText}` }; }
    if (res.status === 401 && r !== routes.sessionGet && r !== routes.sessionCreate) {
      window.dispatchEvent(new CustomEvent("aurum:signedout"));
    }
    throw new APIError(res.status, body);
  }
  if (opts.as === "text") return res.text();
  if (opts.as === "blob") return res.blob();
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export { routes };
