package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/internal/purchasegen"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/features"
)

// sharedDataFile returns ../shared/data/<rel> from the repository root
// (the clone sits next to shared/), or skips the test.
func sharedDataFile(t *testing.T, rel string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(filepath.Dir(dir), "shared", "data", rel)
			if _, err := os.Stat(p); err != nil {
				t.Skipf("data not found next to the repository (%s): %v", p, err)
			}
			return p
		}
		if filepath.Dir(dir) == dir {
			t.Skipf("no go.mod above %s: cannot find ../shared", wd)
		}
	}
}

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.5g, want %.5g ± %.3g", what, got, want, tol)
	}
}

// TestCDNOWThroughTheProduct is must-show 1 of issue #12: the CDNOW sample
// goes through the product's own path on a real process (aurum import as
// Order Completed events with their dates and dollar values → aurum model
// fit clv --calibration-end 1997-09-30 → aurum model evaluate), and the
// fitted parameters and the back-test are the published ones
// (docs/predictions.md has the table). The same data read from the file
// by package predict's tests gives the same numbers.
func TestCDNOWThroughTheProduct(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	raw, err := os.ReadFile(sharedDataFile(t, "cdnow/CDNOW_sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// The sample has no header line: master id, sample id, date, CDs, dollars.
	dir := t.TempDir()
	file := writeFile(t, dir, "cdnow.txt", "master sample date cds dollars\n"+string(raw))
	n := startNode(t, t.TempDir())
	n.createSource("cdnow")
	env := append(os.Environ(), "AURUM_SERVER="+n.HTTP, "AURUM_ADMIN_TOKEN="+testAdminToken)

	out, code := aurumCLI(t, env, "import", "--source", "cdnow", "--no-progress", "--comma", "ws", "--id", "sample=crm_id",
		"--event", "Order Completed", "--prop", "dollars=revenue", "--prop", "cds=cds",
		"--timestamp", "date", "--time-layout", "20060102", "--reasons", filepath.Join(dir, "rejected.ndjson"), file)
	if code != 0 {
		t.Fatalf("aurum import: exit %d\n%s", code, out)
	}
	// 6,919 rows, none rejected; rows equal in every column (one customer
	// buying the same CDs for the same amount twice a day) get the same
	// deterministic messageId and count as duplicates: the models count
	// customer-days, so that changes only the day's amount.
	if m := importSummary.FindStringSubmatch(out); m == nil || m[2] != "6919" || m[5] != "0" {
		t.Fatalf("aurum import summary: %s", out)
	}

	out, code = aurumCLI(t, env, "model", "fit", "clv", "--calibration-end", "1997-09-30", "--wait", "--output", "json")
	if code != 0 {
		t.Fatalf("aurum model fit: exit %d\n%s", code, out)
	}
	var info models.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("model fit output: %v\n%s", err, out)
	}
	if info.Status != models.StatusReady || info.Params == nil || info.TimeUnit != "week" || info.Kind != "clv" {
		t.Fatalf("model: %+v", info)
	}
	p := info.Params
	t.Logf("bgnbd %+v pareto_nbd %+v gamma_gamma %+v customers %d (%d repeaters)", p.BGNBD, p.ParetoNBD, p.GammaGamma, info.Customers, info.Repeaters)
	if info.Customers != 2357 || info.Repeaters != 946 {
		t.Errorf("customers %d, repeaters %d; want 2357, 946", info.Customers, info.Repeaters)
	}
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"bgnbd r", p.BGNBD.R, 0.243}, {"bgnbd alpha", p.BGNBD.Alpha, 4.414}, {"bgnbd a", p.BGNBD.A, 0.793}, {"bgnbd b", p.BGNBD.B, 2.426},
		{"pareto_nbd r", p.ParetoNBD.R, 0.553}, {"pareto_nbd alpha", p.ParetoNBD.Alpha, 10.578},
		{"pareto_nbd s", p.ParetoNBD.S, 0.606}, {"pareto_nbd beta", p.ParetoNBD.Beta, 11.669},
		{"gamma_gamma p", p.GammaGamma.P, 6.25}, {"gamma_gamma q", p.GammaGamma.Q, 3.74}, {"gamma_gamma gamma", p.GammaGamma.Gamma, 15.44},
	} {
		near(t, c.what, c.got, c.want, 0.01*c.want)
	}
	near(t, "bgnbd log-likelihood", p.BGNBD.LogLikelihood, -9582.4, 0.5)
	near(t, "pareto_nbd log-likelihood", p.ParetoNBD.LogLikelihood, -9595.0, 0.5)

	// The GET answers the same record.
	var got models.Info
	n.mustJSON("GET", "/v1/models/clv", nil, adminAuth, 200, &got)
	if got.Params == nil || *got.Params != *p || got.Version != 1 {
		t.Errorf("GET /v1/models/clv: %+v, want the fit's %+v", got, info)
	}

	out, code = aurumCLI(t, env, "model", "evaluate", "clv", "--holdout-end", "1998-06-30", "--json")
	if code != 0 {
		t.Fatalf("aurum model evaluate: exit %d\n%s", code, out)
	}
	var ev models.EvaluationInfo
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("evaluate output: %v\n%s", err, out)
	}
	t.Logf("evaluation: %s", out)
	if ev.Customers != 2357 || ev.BGNBD.Actual != 1882 || ev.BGNBD.Correlation == nil || ev.BGNBD.MAPE == nil || ev.BGNBD.TotalError == nil {
		t.Fatalf("evaluation: %+v", ev)
	}
	near(t, "holdout weeks", ev.Holdout, 39, 0.01)
	near(t, "bgnbd correlation", *ev.BGNBD.Correlation, 0.626, 0.01)
	near(t, "bgnbd mape", *ev.BGNBD.MAPE, 0.984, 0.01)
	near(t, "bgnbd total error", *ev.BGNBD.TotalError, -0.121, 0.01)
	near(t, "pareto_nbd correlation", *ev.ParetoNBD.Correlation, 0.630, 0.01)
	// The published mean-by-frequency table (BTYDplus), to 2 decimals.
	published := []struct {
		customers        int
		expected, actual float64
	}{{1411, 0.23, 0.24}, {439, 0.52, 0.70}, {214, 1.04, 1.39}, {100, 1.52, 1.56}, {62, 2.16, 2.53}, {38, 2.65, 2.95}}
	if len(ev.BGNBD.ByFrequency) != len(published) {
		t.Fatalf("by frequency: %d rows, want %d", len(ev.BGNBD.ByFrequency), len(published))
	}
	for x, want := range published {
		row := ev.BGNBD.ByFrequency[x]
		if row.Customers != want.customers || row.Expected == nil || row.Actual == nil {
			t.Errorf("x=%d: %+v, want %d customers", x, row, want.customers)
			continue
		}
		near(t, fmt.Sprintf("expected at x=%d", x), *row.Expected, want.expected, 0.006)
		near(t, fmt.Sprintf("actual at x=%d", x), *row.Actual, want.actual, 0.006)
	}
}

// seedPurchases posts a small purchase history (60 customers buying in
// 2024, purchasegen) on the source with write key key, and fits the model clv on it
// through the CLI; it returns the model.
func seedPurchases(t *testing.T, n *node, key string, env []string) models.Info {
	t.Helper()
	var batch []map[string]any
	for i, p := range purchasegen.Generate(60, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 1) {
		batch = append(batch, map[string]any{"type": "track", "userId": "buyer-" + p.Customer, "event": "Order Completed",
			"messageId": fmt.Sprintf("seed-%d", i), "properties": map[string]any{"revenue": p.Amount},
			"timestamp": time.Unix(int64(p.Day)*86400+43200, 0).UTC().Format(time.RFC3339)})
	}
	n.mustJSON("POST", "/v1/batch", map[string]any{"batch": batch}, writeKeyAuth(key), http.StatusOK, nil)
	out, code := aurumCLI(t, env, "model", "fit", "clv", "--calibration-end", "2024-06-30", "--wait", "--output", "json")
	if code != 0 {
		t.Fatalf("aurum model fit: exit %d\n%s", code, out)
	}
	var info models.Info
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Params == nil {
		t.Fatalf("model fit output: %v\n%s", err, out)
	}
	return info
}

// TestChurnAudienceByTimeAlone is must-show 3 of issue #12 (and 4): on a
// real process, a person enters an audience on predictions.churn_risk and
// later leaves it with no new event, as their churn risk rises with
// silence, seen by a NATS subscriber on aurum.audience.>; then a replay of
// the log rebuilds the same state (features, model record, memberships
// and timers: the dry run finds no key different).
func TestChurnAudienceByTimeAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real aurum process")
	}
	parallelProcess(t)
	n := startNode(t, t.TempDir(), "--tick", "100ms")
	key := n.createSource("pos")
	env := append(os.Environ(), "AURUM_SERVER="+n.HTTP, "AURUM_ADMIN_TOKEN="+testAdminToken)
	info := seedPurchases(t, n, key, env)

	msgs := n.followAudiences(t, 64)

	// The person bought three and two weeks ago and a week ago; their churn
	// risk is the model's score of those purchase days as time passes: the
	// same function the node evaluates (projections.ModelScores).
	now := time.Now()
	row := &features.Features{}
	for i, ago := range []int{21, 14, 7} {
		ts := now.Add(-time.Duration(ago) * 24 * time.Hour)
		n.mustJSON("POST", "/v1/track", map[string]any{"userId": "churner", "event": "Order Completed", "messageId": fmt.Sprintf("churn-%d", i),
			"timestamp": ts.UTC().Format(time.RFC3339Nano), "properties": map[string]any{"revenue": 20}}, writeKeyAuth(key), http.StatusOK, nil)
		row.Purchases = append(row.Purchases, features.PurchaseDay{Day: features.DayOf(ts.UnixMilli()), Orders: 1, Micros: 20e6})
	}
	p := info.Params
	m := &projections.Model{Name: "clv", Kind: "clv", DaysPerUnit: 7, Scorer: info.Scorer,
		BGNBD:      projections.ModelParams{P: []float64{p.BGNBD.R, p.BGNBD.Alpha, p.BGNBD.A, p.BGNBD.B}},
		ParetoNBD:  projections.ModelParams{P: []float64{p.ParetoNBD.R, p.ParetoNBD.Alpha, p.ParetoNBD.S, p.ParetoNBD.Beta}},
		GammaGamma: projections.ModelParams{P: []float64{p.GammaGamma.P, p.GammaGamma.Q, p.GammaGamma.Gamma}}}
	churn := func(at time.Time) float64 {
		s, ok := projections.ModelScores(m, row, at.UnixMilli())
		if !ok {
			t.Fatalf("no score at %v", at)
		}
		return math.Round(s.ChurnRisk*1e9) / 1e9
	}
	// The three purchases are applied before the band is chosen, so that
	// the audience, once created, scores the same row as the test.
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := n.profile("user_id:churner")
		if err == nil {
			if f, _ := p["features"].(map[string]any); f != nil && f["purchases"] == float64(3) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the churner's purchases were not applied within 60 s: %v %v", p, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The band its churn risk crosses between lead and 3×lead from the
	// audience's creation (wide: the node samples time by tick records,
	// and on a loaded machine consecutive ticks can be seconds apart; a
	// band narrower than such a gap is crossed without a transition). The
	// person must be outside it when the audience is created (else they
	// enter by the rule, not by time): on a loaded machine where the
	// creation takes longer than half the lead, the audience is dropped and
	// made again with a lead twice as long.
	var (
		name         string
		enter, leave time.Time
	)
	for attempt := 0; ; attempt++ {
		start := time.Now()
		lead := time.Duration(4<<attempt) * time.Second
		enter, leave = start.Add(lead), start.Add(3*lead)
		lo, hi := churn(enter), churn(leave)
		if !(hi-lo > 1e-8) || churn(start) >= lo {
			t.Fatalf("churn risk %v now, %v at +%v, %v at +%v: does not rise enough with silence", churn(start), lo, lead, hi, 3*lead)
		}
		rule := fmt.Sprintf("predictions.churn_risk > %s and predictions.churn_risk <= %s",
			strconv.FormatFloat(lo, 'g', -1, 64), strconv.FormatFloat(hi, 'g', -1, 64))
		name = fmt.Sprintf("slipping%d", attempt)
		n.mustJSON("POST", "/v1/audiences", map[string]string{"name": name, "rule": rule}, adminAuth, http.StatusCreated, nil)
		took := time.Since(start)
		if took < lead/2 {
			t.Logf("churn risk band (%v, %v]: audience %s created in %v", lo, hi, name, took)
			break
		}
		if attempt == 2 {
			t.Fatalf("creating an audience took %v with a lead of %v: machine too slow to place the band", took, lead)
		}
		t.Logf("audience %s took %v to create (lead %v): again with a longer lead", name, took, lead)
		n.mustJSON("DELETE", "/v1/audiences/"+name, nil, adminAuth, http.StatusNoContent, nil)
	}
	prefix := "aurum.audience." + name + "."

	// The churner's transitions on the current audience (the seeded buyers'
	// risks are far above the band).
	next := func() (map[string]any, string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case msg := <-msgs:
				if !strings.HasPrefix(msg.Subject, prefix) {
					continue // an audience dropped above
				}
				var v map[string]any
				if err := json.Unmarshal(msg.Data, &v); err != nil {
					t.Fatal(err)
				}
				ids, _ := v["identifiers"].(map[string]any)
				if fmt.Sprint(ids["user_id"]) != "[churner]" {
					t.Fatalf("transition of another person %s: %v", msg.Subject, v)
				}
				return v, msg.Subject
			case <-timeout:
				t.Fatalf("no transition on %s> within 60 s", prefix)
			}
		}
	}
	in, subj := next()
	entered := time.Now()
	if subj != prefix+"entered" || in["reason"] != "time" {
		t.Fatalf("first message %s: %v, want an entry by time", subj, in)
	}
	out, subj := next()
	left := time.Now()
	if subj != prefix+"exited" || out["reason"] != "time" || out["profile_id"] != in["profile_id"] {
		t.Fatalf("second message %s: %v, want an exit by time", subj, out)
	}
	if entered.Before(enter) || left.Before(leave) {
		t.Errorf("entered at %v, left at %v: before the scores crossed the band (%v, %v)", entered, left, enter, leave)
	}
	t.Logf("entered %v after the band opened, left %v after it closed", entered.Sub(enter), left.Sub(leave))

	// Must-show 4: a replay of the log rebuilds the same state, features,
	// model record, memberships and timers included.
	if out, code := aurumCLI(t, env, "replay", "--no-progress", "--output", "json"); code != 0 || !strings.Contains(out, `"status": "done"`) {
		t.Fatalf("aurum replay: exit %d\n%s", code, out)
	}
	out2, code := aurumCLI(t, env, "replay", "--dry-run", "--no-progress", "--output", "json")
	var st struct {
		Status string `json:"status"`
		Diff   struct {
			KeysChanged int `json:"keys_changed"`
		} `json:"diff"`
	}
	if code != 0 || json.Unmarshal([]byte(out2[strings.Index(out2, "{"):]), &st) != nil || st.Status != "done" || st.Diff.KeysChanged != 0 {
		t.Fatalf("replay --dry-run: exit %d\n%s", code, out2)
	}
	var a struct {
		Size int `json:"size"`
	}
	n.mustJSON("GET", "/v1/audiences/"+name, nil, adminAuth, http.StatusOK, &a)
	if a.Size != 0 {
		t.Errorf("%s has %d members after the replay, want 0 (the churner left)", name, a.Size)
	}
}
