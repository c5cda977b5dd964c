package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/purchasegen"
)

// seedModel tracks a small purchase history (60 customers, 2024,
// purchasegen) on source
// web and fits the model name on it (calibration to 2024-06-30), for the
// fixtures of the model routes.
func (s *accessServer) seedModel(name string) {
	s.t.Helper()
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i, p := range purchasegen.Generate(60, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 1) {
		if i > 0 {
			b.WriteByte(',')
		}
		ts := time.Unix(int64(p.Day)*86400+43200, 0).UTC().Format(time.RFC3339)
		fmt.Fprintf(&b, `{"type":"track","userId":%q,"event":"Order Completed","messageId":"seedbuy%d","timestamp":%q,"properties":{"revenue":%v}}`,
			p.Customer, i, ts, p.Amount)
	}
	b.WriteString(`]}`)
	if r := s.do(req{path: "/v1/batch", key: s.webKey, body: []byte(b.String())}); r.code != http.StatusOK {
		s.t.Fatalf("seed purchases: %s", r)
	}
	if r := s.do(req{path: "/v1/models", admin: true, body: []byte(`{"name":"` + name + `","calibration_end":"2024-06-30"}`)}); r.code != http.StatusAccepted {
		s.t.Fatalf("fit: %s", r)
	}
	s.waitModel(name, models.StatusReady)
}

// waitModel waits until the model name has left status running and has
// status want.
func (s *accessServer) waitModel(name, want string) {
	s.t.Helper()
	check.For(s.t, 60*time.Second, 20*time.Millisecond, func() error {
		info, err := s.e.Models().Model(name)
		if err != nil {
			return err
		}
		if info.Status != want {
			return fmt.Errorf("model %s: status %s (%s), want %s", name, info.Status, info.Error, want)
		}
		return nil
	})
}

// failedFit starts a fit that fails (no customer by 2000) and waits for it.
func (s *accessServer) failedFit(name string) {
	s.t.Helper()
	if _, err := s.e.Models().Fit(models.Request{Name: name, CalibrationEnd: "2000-01-01"}); err != nil {
		s.t.Fatal(err)
	}
	s.waitModel(name, models.StatusFailed)
}

// getJSON GETs path as admin and decodes the 200 answer into out.
func (s *accessServer) getJSON(path string, out any) {
	s.t.Helper()
	r := s.do(req{method: "GET", path: path, admin: true})
	if r.code != http.StatusOK {
		s.t.Fatalf("GET %s: %s", path, r)
	}
	if err := json.Unmarshal(r.body, out); err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
}

// TestModelRoutes: the model routes answer in the shape, refuse a
// bad body with a 400 naming the field, an unknown model with 404, and a
// second fit of a running name with 409.
func TestModelRoutes(t *testing.T) {
	s := newAccessServer(t, nil)
	s.seedModel("clv")
	var info models.Info
	s.getJSON("/v1/models/clv", &info)
	if info.Name != "clv" || info.Kind != "clv" || info.Status != "ready" || info.TimeUnit != "week" || info.Params == nil ||
		info.Params.BGNBD.LogLikelihood >= 0 || info.Customers != 60 || info.CalibrationEnd != "2024-06-30" {
		t.Errorf("GET /v1/models/clv: %+v", info)
	}
	var list struct {
		Models []models.Info `json:"models"`
	}
	s.getJSON("/v1/models", &list)
	if len(list.Models) != 1 || list.Models[0].Name != "clv" {
		t.Errorf("GET /v1/models: %+v", list)
	}
	var ev models.EvaluationInfo
	s.getJSON("/v1/models/clv/evaluation?holdout_end=2024-12-31", &ev)
	if ev.Customers != 60 || ev.HoldoutEnd != "2024-12-31" || len(ev.BGNBD.ByFrequency) != 6 || ev.BGNBD.Actual == 0 {
		t.Errorf("evaluation: %+v", ev)
	}
	for _, tt := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{"POST", "/v1/models", `{"name":"x","calibration_end":"1997-13-01"}`, 400, "calibration_end"},
		{"POST", "/v1/models", `{"name":"x","calibration_end":"1997-09-30","event":"Checkout"}`, 400, "event"},
		{"POST", "/v1/models", `{"name":"x","calibration_end":"1997-09-30","revenue":"total"}`, 400, "revenue"},
		{"POST", "/v1/models", `{"calibration_end":"1997-09-30"}`, 400, "name"},
		{"POST", "/v1/models", `{"name":"x","calibration_end":"1997-09-30","nope":1}`, 400, "nope"},
		{"POST", "/v1/models", `{"name":"nbp","kind":"recommend","max_items":0.5}`, 400, "max_items"},
		{"POST", "/v1/models", `{"name":"nbp","kind":"recommend","max_items":5000}`, 400, "max_items"},
		{"POST", "/v1/models", `{"name":"nbp","kind":"recommend","window_days":30}`, 400, "window_days"},
		{"POST", "/v1/models", `{"name":"nbp","kind":"recommend","event":"Order Completed"}`, 400, "event"},
		{"POST", "/v1/models", `{"name":"nbp","kind":"recommended"}`, 400, "kind"},
		{"POST", "/v1/models", `{"name":"nbp","kind":"recommend","refit_every":"1ms"}`, 400, "refit_every"},
		{"POST", "/v1/models", `{"name":"x","calibration_end":"1997-09-30","refit_every":"7d"}`, 400, "refit_every"},
		{"POST", "/v1/models", `{"name":"sub","kind":"propensity","event":"Subscription Started","revenue":"revenue"}`, 400, "revenue"},
		{"POST", "/v1/models", `{"name":"p","kind":"propensity","algorithm":"forest"}`, 400, "algorithm"},
		{"POST", "/v1/models", `{"name":"x","calibration_end":"1997-09-30","algorithm":"gbt"}`, 400, "algorithm"},
		{"GET", "/v1/models/nope", "", 404, "name"},
		{"GET", "/v1/models/clv/evaluation", "", 400, "holdout_end"},
		{"GET", "/v1/models/clv/evaluation?holdout_end=2024-01-01", "", 400, "holdout_end"},
		{"GET", "/v1/models/clv/evaluation?holdout_end=2025-01-01&max_x=0", "", 400, "max_x"},
		{"DELETE", "/v1/models/nope", "", 404, "name"},
	} {
		r := s.do(req{method: tt.method, path: tt.path, admin: true, body: []byte(tt.body)})
		if r.code != tt.code || !strings.Contains(string(r.body), `"field":"`+tt.field+`"`) {
			t.Errorf("%s %s %s: %s, want %d on field %s", tt.method, tt.path, tt.body, r, tt.code, tt.field)
		}
	}
	// A failed fit shows failed with its reason; DELETE forgets it.
	s.failedFit("early")
	s.getJSON("/v1/models/early", &info)
	if info.Status != "failed" || info.Error == "" {
		t.Errorf("failed fit: %+v", info)
	}
	if r := s.do(req{method: "DELETE", path: "/v1/models/early", admin: true}); r.code != http.StatusNoContent {
		t.Errorf("DELETE failed fit: %s", r)
	}
	if r := s.do(req{method: "DELETE", path: "/v1/models/clv", admin: true}); r.code != http.StatusNoContent {
		t.Errorf("DELETE: %s", r)
	}
	if _, err := s.e.Models().Model("clv"); !errors.Is(err, base.ErrNotFound) {
		t.Errorf("after DELETE: %v", err)
	}
}

// TestNextBestProductsRoute: a recommend model fitted through POST
// /v1/models shows on GET /v1/profiles/{ref} as
// predictions.next_best_products, the planted co-occurrence first (30
// people view A then buy B; P is bought more, alone), never an item bought;
// GET /v1/models/nbp shows its counts.
func TestNextBestProductsRoute(t *testing.T) {
	s := newAccessServer(t, nil)
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	n := 0
	add := func(user, name, item string, at time.Time) {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","userId":%q,"event":%q,"messageId":"nbp%d","timestamp":%q,"properties":{"product_id":%q,"category":"c"}}`,
			user, name, n, at.Format(time.RFC3339), item)
		n++
	}
	t0 := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 30 {
		add(fmt.Sprintf("ab%d", i), "Product Viewed", "A", t0.Add(time.Duration(i)*time.Minute))
		add(fmt.Sprintf("ab%d", i), "Order Completed", "B", t0.Add(time.Duration(i)*time.Minute+time.Hour))
	}
	for i := range 40 {
		add(fmt.Sprintf("p%d", i), "Order Completed", "P", t0.Add(time.Duration(i)*time.Minute))
	}
	add("t1", "Order Completed", "A", t0.Add(48*time.Hour))
	b.WriteString(`]}`)
	if r := s.do(req{path: "/v1/batch", key: s.webKey, body: []byte(b.String())}); r.code != http.StatusOK {
		t.Fatalf("seed: %s", r)
	}
	if r := s.do(req{path: "/v1/models", admin: true, body: []byte(`{"name":"nbp","kind":"recommend"}`)}); r.code != http.StatusAccepted {
		t.Fatalf("fit: %s", r)
	}
	s.waitModel("nbp", models.StatusReady)
	var info models.Info
	s.getJSON("/v1/models/nbp", &info)
	if info.Kind != "recommend" || info.Recommend == nil || info.Recommend.Users != 71 || info.Recommend.Items != 3 {
		t.Fatalf("GET /v1/models/nbp: %+v %+v", info, info.Recommend)
	}
	var p struct {
		Predictions struct {
			NextBest []struct {
				Item  string  `json:"item"`
				Score float64 `json:"score"`
			} `json:"next_best_products"`
		} `json:"predictions"`
	}
	s.getJSON("/v1/profiles/user_id:t1", &p)
	nb := p.Predictions.NextBest
	if len(nb) != 2 || nb[0].Item != "B" || nb[1].Item != "P" || !(nb[0].Score > nb[1].Score) {
		t.Fatalf("next_best_products of t1 (bought A; items A, B, P): %+v, want B then P", nb)
	}
}
