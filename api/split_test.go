package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/matching"
)

// TestSplitAPI: POST /v1/profiles/{ref}/split answers bad requests with
// the status and field they deserve, splits a wrongly merged profile, and
// the explanation of both profiles shows the split.
func TestSplitAPI(t *testing.T) {
	s := newIdentityServer(t)
	a := s.identify(`{"userId":"ann","traits":{"email":"ann@x.org","surname":"Lee","postcode":"2600"}}`, "user_id:ann")
	s.identify(`{"anonymousId":"ann-web","userId":"ann"}`, "user_id:ann")
	b := s.identify(`{"anonymousId":"bob-web","traits":{"surname":"Lee","postcode":"2600"}}`, "anonymous_id:bob-web")
	if rv := s.propose(b, a, 0.999); rv.Status != "merged" {
		t.Fatalf("wrong merge: %+v", rv)
	}
	split := func(ref, body string) (int, string) {
		r := s.do(req{path: "/v1/profiles/" + ref + "/split", admin: true, body: []byte(body)})
		return r.code, string(r.body)
	}
	for _, tc := range []struct {
		name, ref, body string
		code            int
		want            string
	}{
		{"unknown ref", "user_id:nobody", `{"identifiers":["anonymous_id:bob-web"]}`, http.StatusNotFound, `"field":"ref"`},
		{"bad ref", "nocolon", `{"identifiers":["anonymous_id:bob-web"]}`, http.StatusBadRequest, `"field":"ref"`},
		{"empty list", "user_id:ann", `{"identifiers":[]}`, http.StatusBadRequest, `"field":"identifiers"`},
		{"no list", "user_id:ann", `{}`, http.StatusBadRequest, `"field":"identifiers"`},
		{"not the profile's", "user_id:ann", `{"identifiers":["anonymous_id:bob-web","crm_id:zed","email:x@y.org"]}`,
			http.StatusBadRequest, `crm_id:zed, email:x@y.org`},
		{"all of them", "user_id:ann", `{"identifiers":["anonymous_id:bob-web","anonymous_id:ann-web","user_id:ann","email:ann@x.org"]}`,
			http.StatusBadRequest, `all the identifiers`},
		{"a profile id", "user_id:ann", `{"identifiers":["profile_id:` + base.ULIDString(b) + `"]}`, http.StatusBadRequest, `not an identifier`},
	} {
		code, body := split(tc.ref, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.name, code, body, tc.code, tc.want)
		}
	}
	if ex := s.explain("user_id:ann"); len(ex.Splits) != 0 || len(ex.Links) != 1 {
		t.Fatalf("explanation before the split: %+v", ex)
	}

	code, body := split("user_id:ann", `{"identifiers":["anonymous_id:bob-web"]}`)
	if code != http.StatusCreated {
		t.Fatalf("split: %d %s", code, body)
	}
	var info matching.SplitInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	if info.Status != "split" || info.From != base.ULIDString(a) || info.Into == "" || info.EventsMoved != 1 || info.EventsKept != 2 ||
		info.By == "" || len(info.IdentifierTypes) != 1 || info.IdentifierTypes[0] != "anonymous_id" {
		t.Fatalf("split: %+v", info)
	}
	bob := s.waitProfile("anonymous_id:bob-web")
	if bob["profile_id"] != info.Into {
		t.Fatalf("bob's profile %v, want %s", bob["profile_id"], info.Into)
	}
	for _, ref := range []string{"user_id:ann", "anonymous_id:bob-web"} {
		ex := s.explain(ref)
		if len(ex.Splits) != 1 || ex.Splits[0].ID != info.ID || ex.Splits[0].Into != info.Into {
			t.Errorf("explanation of %s: splits %+v", ref, ex.Splits)
		}
	}
	// Ann's explanation still shows the merge that was undone, then the split.
	if ex := s.explain("user_id:ann"); len(ex.Links) != 1 || ex.Links[0].Seq >= ex.Splits[0].Seq {
		t.Errorf("ann's links %+v, splits %+v", ex.Links, ex.Splits)
	}
	// The pair is never merged back by the matcher.
	if rv := s.propose(b, a, 1); rv.Status != "refused" || !strings.Contains(rv.Reason, "rejected") {
		t.Errorf("re-merge after the split: %+v", rv)
	}
}
