// Every API route the console calls, in the API route table's own form
// ("METHOD /path" and who may call it: access "public", or "roles" with the
// roles allowed besides admin). The console calls nothing else: api.js
// builds every request from one of these, and TestConsoleRoutesInAPI checks
// each entry against the API's route table (same pattern, same access, same
// roles). The UI shows a control only when the signed-in role may call its
// route (can() in api.js); the server enforces the roles whatever the UI shows.
export const routes = {
  sessionGet: { route: "GET /v1/session", access: "roles", roles: ["editor", "viewer", "privacy"] },
  sessionCreate: { route: "POST /v1/session", access: "public" },
  sessionProviders: { route: "GET /v1/session/providers", access: "public" },
  oidcLogin: { route: "GET /v1/session/oidc/login", access: "public" }, // a navigation (the provider's page), not a fetch
  oidcCallback: { route: "GET /v1/session/oidc/callback", access: "public" }, // where the provider sends the browser back
  sessionDelete: { route: "DELETE /v1/session", access: "roles", roles: ["editor", "viewer", "privacy"] },
  statsHistory: { route: "GET /v1/stats/history", access: "roles", roles: ["editor", "viewer"] },
  audiences: { route: "GET /v1/audiences", access: "roles", roles: ["editor", "viewer"] },
  audience: { route: "GET /v1/audiences/{name}", access: "roles", roles: ["editor", "viewer"] },
  audienceCreate: { route: "POST /v1/audiences", access: "roles", roles: ["editor"] },
  audienceReplace: { route: "PUT /v1/audiences/{name}", access: "roles", roles: ["editor"] },
  audienceDelete: { route: "DELETE /v1/audiences/{name}", access: "roles", roles: ["editor"] },
  audiencePreview: { route: "POST /v1/audiences/preview", access: "roles", roles: ["editor"] },
  audienceMembers: { route: "GET /v1/audiences/{name}/members", access: "roles", roles: ["editor", "viewer"] },
  audienceExport: { route: "GET /v1/audiences/{name}/export", access: "roles", roles: ["editor", "viewer"] },
  models: { route: "GET /v1/models", access: "roles", roles: ["editor", "viewer"] },
  profile: { route: "GET /v1/profiles/{ref}", access: "roles", roles: ["editor", "viewer", "privacy"] },
  profileEvents: { route: "GET /v1/profiles/{ref}/events", access: "roles", roles: ["editor", "viewer", "privacy"] },
  profileAudienceHistory: { route: "GET /v1/profiles/{ref}/audience-history", access: "roles", roles: ["editor", "viewer", "privacy"] },
  profileExport: { route: "GET /v1/profiles/{ref}/export", access: "roles", roles: ["privacy"] },
  erasureCreate: { route: "POST /v1/privacy/erasures", access: "roles", roles: ["privacy"] },
  destinations: { route: "GET /v1/destinations", access: "roles", roles: ["editor", "viewer"] },
  destinationCreate: { route: "POST /v1/destinations", access: "roles", roles: ["editor"] },
  destinationDelete: { route: "DELETE /v1/destinations/{name}", access: "roles", roles: ["editor"] },
  deadLetters: { route: "GET /v1/deadletters", access: "roles", roles: ["editor", "viewer"] },
  tokens: { route: "GET /v1/tokens", access: "roles", roles: [] },
  tokenCreate: { route: "POST /v1/tokens", access: "roles", roles: [] },
  tokenRevoke: { route: "DELETE /v1/tokens/{id}", access: "roles", roles: [] },
  users: { route: "GET /v1/users", access: "roles", roles: [] },
  userCreate: { route: "POST /v1/users", access: "roles", roles: [] },
  userDelete: { route: "DELETE /v1/users/{name}", access: "roles", roles: [] },
  audit: { route: "GET /v1/audit", access: "roles", roles: [] },
};
