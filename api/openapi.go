package api

import (
	"net/http"
	"regexp"
	"strings"
)

// routeSummaries describe each route of the table for the OpenAPI
// description. TestOpenAPIFromRouteTable fails when a route has none, so a
// new route cannot be left out of /v1/openapi.json.
var routeSummaries = map[string]string{
	"POST /v1/track":                          "Record an event (Segment track)",
	"POST /v1/identify":                       "Identify a person, with traits (Segment identify)",
	"POST /v1/page":                           "Record a page view (Segment page)",
	"POST /v1/screen":                         "Record a screen view (Segment screen)",
	"POST /v1/group":                          "Associate a person with a group (Segment group)",
	"POST /v1/alias":                          "Join two identities (Segment alias)",
	"POST /v1/batch":                          "Record a batch of events (Segment batch); invalid ones are listed",
	"POST /v1/import/{source}":                "Import a batch of history rows for a source (accepted, duplicates, rejected)",
	"POST /v1/sources":                        "Create a source and its write key (shown once)",
	"GET /v1/sources":                         "List sources",
	"DELETE /v1/sources/{name}":               "Delete a source: its write keys stop working",
	"POST /v1/sources/{name}/rotate-key":      "A new write key; the old one works for a grace period (grace, default 24h)",
	"GET /v1/profiles/{ref}":                  "The Golden Customer Record of an identifier (type:value)",
	"GET /v1/profiles/{ref}/events":           "A page of a profile's events, newest first (cursor: the next of the previous page)",
	"GET /v1/profiles/{ref}/audience-history": "A page of a profile's audience entries and exits with times and reasons, newest first",
	"GET /v1/profiles/{ref}/export":           "A person's whole record (access and portability)",
	"PUT /v1/profiles/{ref}/consent":          "State a person's consent per channel",
	"POST /v1/privacy/erasures":               "Erase the person an identifier resolves to",
	"GET /v1/privacy/erasures":                "List erasures",
	"GET /v1/privacy/erasures/{id}":           "An erasure's status",
	"POST /v1/exports":                        "Write a warehouse export run now (personal, all_transitions; 201: its manifest; 409 while one runs)",
	"GET /v1/exports":                         "The warehouse export runs in this node's export directory, newest first",
	"GET /v1/exports/schedule":                "The warehouse export schedule in effect (set on the log, else serve's --export-* flags)",
	"PUT /v1/exports/schedule":                "Set the warehouse export schedule of every node (interval, keep, personal)",
	"GET /v1/audit":                           "A page of the audit log (since, newest, limit)",
	"GET /v1/deadletters":                     "Rejected events with their reasons",
	"POST /v1/replay":                         "Start a rebuild of the projections from the log",
	"GET /v1/replay":                          "The rebuild's status",
	"POST /v1/snapshots":                      "Snapshot the projections",
	"GET /v1/snapshots":                       "List snapshots",
	"GET /v1/digest":                          "Digest of the projections at the applied position",
	"GET /v1/stats/history":                   "The node's stats of the last hour: events per second, profiles, merges, audience sizes (since=: newer samples only)",
	"POST /v1/destinations":                   "Create a destination: a webhook, or a connector kind with its config (docs/connectors.md)",
	"GET /v1/destinations":                    "List destinations with delivery statistics",
	"GET /v1/destinations/{name}":             "A destination with delivery statistics",
	"DELETE /v1/destinations/{name}":          "Delete a destination",
	"POST /v1/audiences/suggest":              "Discover segments (k-means on RFM and behaviour) and a rule for each, ready to save as an audience",
	"GET /v1/profiles/{ref}/identity":         "A profile's identifiers and, for each link, what made it (event and shared identifier, or the probabilistic match with per-field contributions)",
	"POST /v1/identity/model":                 "Fit the probabilistic identity model from the current profiles (bounded sample) and record it; every profile is matched again",
	"GET /v1/identity/model":                  "The probabilistic identity model in effect: m and u per comparison level, prior",
	"POST /v1/profiles/{ref}/split":           "Undo a wrong merge: {\"identifiers\": [\"crm_id:...\"]} move to a new profile with the events that came with them; both GCRs and audience memberships are recomputed and the matcher never merges the two back",
	"GET /v1/identity/reviews":                "Pending probabilistic matches awaiting a reviewer",
	"POST /v1/identity/reviews/{id}":          "Decide a pending match: {\"decision\": \"merge\" | \"reject\"} (a rejected pair is never merged automatically again)",
	"POST /v1/models":                         "Fit a prediction model in the background (clv: BG/NBD, Pareto/NBD, Gamma-Gamma; propensity: algorithm auto, logistic or gbt; recommend)",
	"GET /v1/models":                          "List prediction models with their status",
	"GET /v1/models/{name}":                   "A prediction model: status, time unit, fitted parameters, customers",
	"DELETE /v1/models/{name}":                "Delete a prediction model",
	"GET /v1/models/{name}/evaluation":        "Back-test a model over a holdout period (holdout_end=YYYY-MM-DD)",
	"POST /v1/audiences":                      "Create an audience",
	"POST /v1/audiences/preview":              "Size and sample of a rule, nothing saved",
	"GET /v1/audiences":                       "List audiences with their sizes",
	"GET /v1/audiences/{name}":                "An audience with its size",
	"PUT /v1/audiences/{name}":                "Create or replace an audience",
	"DELETE /v1/audiences/{name}":             "Delete an audience (refused while another rule names it)",
	"GET /v1/audiences/{name}/members":        "A page of an audience's members (identifiers=true: with their identifiers; q: search by identifier, exact type:value or a prefix)",
	"GET /v1/audiences/{name}/export":         "Every member reachable on a channel, with identifiers and traits (csv, json, ndjson, xml)",
	"POST /v1/tokens":                         "Create an API token (the secret is shown once)",
	"GET /v1/tokens":                          "List API tokens",
	"DELETE /v1/tokens/{id}":                  "Revoke an API token",
	"POST /v1/users":                          "Create a user who logs in (password + TOTP)",
	"GET /v1/users":                           "List users",
	"DELETE /v1/users/{name}":                 "Delete a user and end their sessions",
	"POST /v1/login":                          "Log in: a session token",
	"POST /v1/session":                        "Sign in to the console (API token, or name + password + totp): sets the session and CSRF cookies",
	"GET /v1/session":                         "Who is signed in (name, role, expiry)",
	"DELETE /v1/session":                      "Sign out: ends the session and clears its cookies",
	"GET /v1/session/providers":               "The sign-ins this server offers (token, password, OpenID Connect)",
	"GET /v1/session/oidc/login":              "Single sign-on: redirect to the OpenID Connect provider (code flow with PKCE)",
	"GET /v1/session/oidc/callback":           "Single sign-on: the provider's redirect back; opens the session and redirects to the console",
	"GET /v1/cluster":                         "The cluster: members, leader, partition owners (a node run with --cluster)",
	"POST /v1/cluster/nodes":                  "Add a node to the cluster",
	"DELETE /v1/cluster/nodes/{name}":         "Remove a node from the cluster",
	"GET /healthz":                            "Health of the node",
	"GET /metrics":                            "Prometheus metrics",
	"GET /v1/openapi.json":                    "This description of the API",
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// openAPI is the OpenAPI 3 description of routes: one operation per route
// of the table, its path parameters, who may call it (security schemes and
// x-aurum-access / x-aurum-roles) and the error shape. OPTIONS routes (CORS
// preflight) are left out.
func openAPI(routes []RouteInfo) map[string]any {
	paths := map[string]map[string]any{}
	errResp := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{
		"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
	for _, r := range routes {
		method, path, _ := strings.Cut(r.Pattern, " ")
		if method == http.MethodOptions {
			continue
		}
		op := map[string]any{
			"operationId":    strings.ToLower(method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_").Replace(path),
			"summary":        routeSummaries[r.Pattern],
			"x-aurum-access": r.Access,
			"responses": map[string]any{
				"2XX":     map[string]any{"description": "success"},
				"default": errResp,
			},
		}
		switch r.Access {
		case AccessPublic:
			op["security"] = []any{}
		case AccessWriteKey:
			op["security"] = []any{map[string]any{"writeKey": []string{}}}
		case AccessRoles:
			roles := append([]string{"admin"}, roleNames(r.Roles)...)
			op["security"] = []any{map[string]any{"bearer": []string{}}, map[string]any{"session": []string{}}}
			op["x-aurum-roles"] = roles
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if method == http.MethodPost || method == http.MethodPut {
			op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		}
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "Aurum HTTP API", "version": "1",
			"description": "Generated from the route table (api/routes.go), which states every route and who may call it."},
		"paths": paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{
				"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "the admin token, an API token or a login session"},
				"session": map[string]any{"type": "apiKey", "in": "cookie", "name": SessionCookie,
					"description": "the console's session cookie (POST /v1/session); changes also need the X-Aurum-CSRF header"},
				"writeKey": map[string]any{"type": "http", "scheme": "basic", "description": "a source's write key as the user name (or the body's writeKey)"},
			},
			"schemas": map[string]any{"Error": map[string]any{"type": "object", "required": []string{"error"}, "properties": map[string]any{
				"error": map[string]any{"type": "string"}, "field": map[string]any{"type": "string"}}}},
		},
	}
}

func (s *Server) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.openapiJSON)
}
