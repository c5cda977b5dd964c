package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestOpenAPIFromRouteTable: GET /v1/openapi.json (public) is an OpenAPI 3
// description with exactly the routes of the route table (OPTIONS
// pre-flights aside), each with a summary, its path parameters and who
// may call it, so it cannot drift from the routes.
func TestOpenAPIFromRouteTable(t *testing.T) {
	s := newTestServer(t)
	r := s.do(req{method: http.MethodGet, path: "/v1/openapi.json"})
	if r.code != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json: %s", r)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("not an OpenAPI 3 document (%v): %.200s", err, r.body)
	}
	ops := 0
	for _, p := range doc.Paths {
		ops += len(p)
	}
	want := 0
	for _, rt := range s.srv.Routes() {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		if method == http.MethodOptions {
			continue
		}
		want++
		raw, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("route %s is not in the description", rt.Pattern)
			continue
		}
		var op struct {
			Summary    string   `json:"summary"`
			Access     string   `json:"x-aurum-access"`
			Roles      []string `json:"x-aurum-roles"`
			Parameters []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
		}
		if err := json.Unmarshal(raw, &op); err != nil {
			t.Fatal(err)
		}
		if op.Summary == "" {
			t.Errorf("route %s has no summary (api/openapi.go routeSummaries)", rt.Pattern)
		}
		if op.Access != rt.Access || (rt.Access == "roles" && (len(op.Roles) != len(rt.Roles)+1 || op.Roles[0] != "admin")) {
			t.Errorf("route %s: access %q roles %v, want %q admin+%v", rt.Pattern, op.Access, op.Roles, rt.Access, rt.Roles)
		}
		if n := strings.Count(path, "{"); len(op.Parameters) != n {
			t.Errorf("route %s: %d parameters, want %d", rt.Pattern, len(op.Parameters), n)
		}
		for _, p := range op.Parameters {
			if p.In != "path" || !strings.Contains(path, "{"+p.Name+"}") {
				t.Errorf("route %s: parameter %+v", rt.Pattern, p)
			}
		}
	}
	if ops != want {
		t.Errorf("the description has %d operations, the route table %d", ops, want)
	}
}
