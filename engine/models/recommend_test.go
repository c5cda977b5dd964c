package models_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/engine/models"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/predict/recommend"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
)

// plantedStore is a small store with a planted co-occurrence: 30 people
// view A then buy B an hour later; 40 view and buy P (the most popular
// item, alone); 60 add C to their cart (popular, alone). t1 bought A;
// t2 bought P. The interactions are returned as recommend reads them.
func plantedStore(t *testing.T, e *engine.Engine) []recommend.Interaction {
	t.Helper()
	ctx := context.Background()
	if _, err := e.Gate().CreateSource(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Add(-72 * time.Hour).Truncate(time.Hour)
	var (
		evs []event.Event
		its []recommend.Interaction
	)
	add := func(user, name, item string, at time.Time) {
		ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":%q,"userId":%q,"messageId":"m%d","timestamp":%q,"properties":{"product_id":%q}}`,
			name, user, len(evs), at.Format(time.RFC3339), item)), "", e.Edge().ParseOptions())
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		kind := map[string]recommend.Kind{"Product Viewed": recommend.View, "Product Added": recommend.Cart, "Order Completed": recommend.Buy}[name]
		its = append(its, recommend.Interaction{User: user, Item: item, Kind: kind, Time: at.UnixMilli()})
	}
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Minute)
		add(fmt.Sprintf("ab%d", i), "Product Viewed", "A", at)
		add(fmt.Sprintf("ab%d", i), "Order Completed", "B", at.Add(time.Hour))
	}
	for i := range 40 {
		at := t0.Add(time.Duration(i) * time.Minute)
		add(fmt.Sprintf("p%d", i), "Product Viewed", "P", at)
		add(fmt.Sprintf("p%d", i), "Order Completed", "P", at.Add(time.Hour))
	}
	for i := range 60 {
		add(fmt.Sprintf("c%d", i), "Product Added", "C", t0.Add(time.Duration(i)*time.Minute))
	}
	add("t1", "Order Completed", "A", t0.Add(24*time.Hour))
	add("t2", "Order Completed", "P", t0.Add(24*time.Hour))
	for i := 0; i < len(evs); i += 100 {
		if err := e.Edge().Ingest(ctx, "web", evs[i:min(i+100, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return its
}

func nextBest(t *testing.T, e *engine.Engine, ref string) []projections.Recommendation {
	t.Helper()
	v, err := e.Reader().Profile(ref)
	if err != nil {
		t.Fatal(err)
	}
	recs, ok := v.Predictions["next_best_products"].([]projections.Recommendation)
	if !ok {
		t.Fatalf("%s: predictions %v: no next_best_products", ref, v.Predictions)
	}
	return recs
}

// TestRecommendFit: the fit job reads the planted store's events into a
// recommend model record whose tables equal those of recommend.Model
// trained directly on the same interactions; the profile view shows t1
// (bought A) B first, the planted co-occurrence, and t2 (bought P, whose
// buyers touch nothing else) C, the most popular item it has not bought;
// a replay gives an equal digest and equal lists; bad requests name the
// field.
func TestRecommendFit(t *testing.T) {
	e := newEngine(t)
	its := plantedStore(t, e)
	s := e.Models()
	if _, err := s.Fit(models.Request{Name: "nbp", Kind: "recommend"}); err != nil {
		t.Fatal(err)
	}
	info := waitStatus(t, s, "nbp")
	if info.Status != models.StatusReady || info.Recommend == nil {
		t.Fatalf("model %+v", info)
	}
	if r := info.Recommend; r.Users != 132 || r.Interactions != int64(len(its)) || r.Items != 4 || r.Cut != 0 {
		t.Fatalf("recommend info %+v: want 132 users, %d interactions, 4 items", r, len(its))
	}

	// The same, directly.
	byUser := map[string][]recommend.Interaction{}
	for _, it := range its {
		byUser[it.User] = append(byUser[it.User], it)
	}
	rm, err := recommend.NewModel(recommend.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range byUser { // the model's tables do not depend on the order of users (no counter overflows)
		rm.AddUser(h)
	}
	t1, t2 := nextBest(t, e, "user_id:t1"), nextBest(t, e, "user_id:t2")
	if len(t1) != 3 || t1[0].Item != "B" || len(t2) != 3 || t2[0].Item != "C" {
		t.Fatalf("next best: t1 %v (want B first), t2 %v (want C first)", t1, t2)
	}
	for _, r := range t1 {
		if r.Item == "A" {
			t.Fatalf("t1 bought A, yet it is recommended: %v", t1)
		}
	}
	t.Logf("t1 %v, t2 %v", t1, t2)
	// Their histories hold only a purchase: the scores do not depend on
	// the time (the neighbours of the one item, popularity), so the model
	// trained directly gives the same bits at any later time.
	for user, got := range map[string][]projections.Recommendation{"t1": t1, "t2": t2} {
		want := rm.Recommend(byUser[user], time.Now().Add(time.Hour).UnixMilli(), 3)
		for i := range want {
			if got[i].Item != want[i].Key || got[i].Score != want[i].Score {
				t.Fatalf("%s: the profile view shows %v, the model trained directly %v", user, got, want)
			}
		}
	}
	if r := info.Recommend; r.NeighbourLists != 2 || r.Popular != 4 || r.Categories != 0 {
		t.Fatalf("recommend info %+v: want the neighbour lists of A and B, 4 popular items, no category", r)
	}

	replayAlike(t, e)
	if got := nextBest(t, e, "user_id:t1"); !reflect.DeepEqual(got, t1) {
		t.Fatalf("after the replay t1 %v, before %v", got, t1)
	}

	var fe *models.FieldError
	for _, c := range []struct {
		req   models.Request
		field string
	}{
		{models.Request{Name: "x", Kind: "recommend", MaxItems: -1}, "max_items"},
		{models.Request{Name: "x", Kind: "recommend", MaxItems: projections.MaxRecommendItems + 1}, "max_items"},
		{models.Request{Name: "x", Kind: "recommend", WindowDays: 30}, "window_days"},
		{models.Request{Name: "x", Kind: "recommend", CalibrationEnd: "2024-01-01"}, "calibration_end"},
		{models.Request{Name: "x", Kind: "recommend", Event: "Order Completed"}, "event"},
		{models.Request{Name: "x", Kind: "clv", CalibrationEnd: "2024-01-01", MaxItems: 5}, "max_items"},
		{models.Request{Name: "x", Kind: "nbp"}, "kind"},
	} {
		if _, err := s.Fit(c.req); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want a FieldError on %s", c.req, err, c.field)
		}
	}
}

// trackEvent is one event of user about item at a time.
func trackEvent(t *testing.T, e *engine.Engine, user, name, item string, at time.Time, msgID string) event.Event {
	t.Helper()
	ev, err := event.Parse([]byte(fmt.Sprintf(`{"type":"track","event":%q,"userId":%q,"messageId":%q,"timestamp":%q,"properties":{"product_id":%q}}`,
		name, user, msgID, at.Format(time.RFC3339), item)), "", e.Edge().ParseOptions())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// memberships returns the audiences the person ref is in.
func memberships(t *testing.T, e *engine.Engine, ref string) map[string]bool {
	t.Helper()
	v, err := e.Reader().Profile(ref)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for a := range v.Audiences {
		out[a] = true
	}
	return out
}

// TestNextBestProductsInRules: audiences on predictions.next_best_products
// and predictions.next_best_product. Before any fit nobody is in them;
// the fit makes t1 (bought A) enter "B in its list" and t2 enter "C
// first"; t1 buying B makes it leave (a bought item is never
// recommended); a refit after 50 people view A then buy D makes t1 enter
// "D in its list" with no event of its own; the lists the rules read are
// the profile view's; a replay gives an equal digest and memberships.
func TestNextBestProductsInRules(t *testing.T) {
	e := newEngine(t)
	plantedStore(t, e)
	ctx := context.Background()
	for name, rule := range map[string]string{
		"b-next":  `"B" in predictions.next_best_products`,
		"c-first": `predictions.next_best_product == "C"`,
		"d-next":  `"D" in predictions.nbp.next_best_products`,
	} {
		if _, err := e.PutAudience(ctx, audience.Definition{Name: name, Rule: rule}); err != nil {
			t.Fatal(err)
		}
	}
	// want waits until ref is in exactly the audiences of in among the
	// three (only those in for t2, whose list holds popular items).
	want := func(ref string, in map[string]bool) {
		t.Helper()
		check.For(t, 60*time.Second, 10*time.Millisecond, func() error {
			got := memberships(t, e, ref)
			for _, a := range []string{"b-next", "c-first", "d-next"} {
				if got[a] != in[a] && (ref != "user_id:t2" || in[a]) {
					return fmt.Errorf("%s is in %v, want %v", ref, got, in)
				}
			}
			return nil
		})
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want("user_id:t1", map[string]bool{})

	s := e.Models()
	fit := func() {
		t.Helper()
		if _, err := s.Fit(models.Request{Name: "nbp", Kind: "recommend"}); err != nil {
			t.Fatal(err)
		}
		check.For(t, 60*time.Second, 10*time.Millisecond, func() error {
			info, err := s.Model("nbp")
			if err != nil || info.Status == models.StatusRunning {
				return fmt.Errorf("fit: %v %+v", err, info)
			}
			return nil
		})
	}
	fit()
	want("user_id:t1", map[string]bool{"b-next": true})
	want("user_id:t2", map[string]bool{"c-first": true})
	if l := nextBest(t, e, "user_id:t1"); l[0].Item != "B" {
		t.Fatalf("t1's list %v: want B first, as the rule read it", l)
	}

	// t1 buys B: B leaves its list, and t1 the audience.
	t0 := time.Now().UTC().Add(-72 * time.Hour).Truncate(time.Hour)
	ev := trackEvent(t, e, "t1", "Order Completed", "B", t0.Add(25*time.Hour), "t1-buys-b")
	if err := e.Edge().Ingest(ctx, "web", []event.Event{ev}); err != nil {
		t.Fatal(err)
	}
	want("user_id:t1", map[string]bool{})

	// 50 people view A then buy D; a refit puts D in t1's list.
	ingestViewThenBuy(t, e, t0)
	want("user_id:t1", map[string]bool{})
	fit()
	want("user_id:t1", map[string]bool{"d-next": true})
	l := nextBest(t, e, "user_id:t1")
	if l[0].Item != "D" {
		t.Fatalf("t1's list after the refit %v: want D first", l)
	}
	t.Logf("t1 after the refit: %v", l)

	t2 := memberships(t, e, "user_id:t2")
	replayAlike(t, e)
	want("user_id:t1", map[string]bool{"d-next": true})
	if got := memberships(t, e, "user_id:t2"); !reflect.DeepEqual(got, t2) {
		t.Fatalf("t2 after the replay in %v, before in %v", got, t2)
	}
}

// ingestViewThenBuy has 50 new people (ad0..ad49) view A and buy D an
// hour later, from t0 on a minute apart, and waits until they are applied.
func ingestViewThenBuy(t *testing.T, e *engine.Engine, t0 time.Time) {
	t.Helper()
	var evs []event.Event
	for i := range 50 {
		at := t0.Add(time.Duration(i) * time.Minute)
		evs = append(evs, trackEvent(t, e, fmt.Sprintf("ad%d", i), "Product Viewed", "A", at, fmt.Sprintf("ad-view-%d", i)),
			trackEvent(t, e, fmt.Sprintf("ad%d", i), "Order Completed", "D", at.Add(time.Hour), fmt.Sprintf("ad-buy-%d", i)))
	}
	ctx := context.Background()
	if err := e.Edge().Ingest(ctx, "web", evs); err != nil {
		t.Fatal(err)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// replayAlike replays the log (StartRebuild) and requires the digest after
// it to equal the one before.
func replayAlike(t *testing.T, e *engine.Engine) {
	t.Helper()
	before, err := e.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.StartRebuild(engine.RebuildOptions{}); err != nil {
		t.Fatal(err)
	}
	check.For(t, 60*time.Second, 10*time.Millisecond, func() error {
		switch st := e.RebuildStatus(); st.Status {
		case "done":
			return nil
		case "failed":
			t.Fatalf("replay failed: %s", st.Error)
		}
		return errors.New("replay running")
	})
	after, err := e.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("digest after the replay %+v, before %+v", after, before)
	}
}

// TestRefitPolicy: a recommend model fitted with refit_every 1s is fitted
// again by the job with no request once new events arrived: a record of a
// new version (a model.put like any fit, showing its policy) whose list
// for t1 holds the new item D; a fit of the name without refit_every ends
// the policy (no refit follows); a replay gives an equal digest (it reads
// the records, it does not refit).
func TestRefitPolicy(t *testing.T) {
	e := newEngine(t)
	plantedStore(t, e)
	s := e.Models()
	if _, err := s.Fit(models.Request{Name: "nbp", Kind: "recommend", RefitEvery: "1s"}); err != nil {
		t.Fatal(err)
	}
	info := waitStatus(t, s, "nbp")
	if info.Status != models.StatusReady || info.RefitEvery != "1s" || info.NextRefit == nil {
		t.Fatalf("model %+v: want ready with refit_every 1s", info)
	}
	first := info.Version
	ingestViewThenBuy(t, e, time.Now().UTC().Add(-72*time.Hour).Truncate(time.Hour))
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		info, err := s.Model("nbp")
		if err != nil {
			return err
		}
		if info.Status != models.StatusReady || info.Recommend == nil || info.Recommend.Items != 5 {
			return fmt.Errorf("model %+v: no refit reading D yet", info)
		}
		return nil
	})
	info, err := s.Model("nbp")
	if err != nil {
		t.Fatal(err)
	}
	if info.Version <= first || info.RefitEvery != "1s" || info.Recommend.Items != 5 {
		t.Fatalf("after the refit %+v (recommend %+v): want a later version than %d, still refitting, 5 items", info, info.Recommend, first)
	}
	if l := nextBest(t, e, "user_id:t1"); !slices.ContainsFunc(l, func(r projections.Recommendation) bool { return r.Item == "D" }) {
		t.Fatalf("t1's list after the refit %v: want D in it", l)
	}

	// A fit without the policy ends it (once a refit in flight is done).
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		_, err := s.Fit(models.Request{Name: "nbp", Kind: "recommend"})
		if errors.Is(err, models.ErrBusy) {
			return err
		}
		if err != nil {
			t.Fatal(err)
		}
		return nil
	})
	check.For(t, 60*time.Second, 20*time.Millisecond, func() error {
		if info, err = s.Model("nbp"); err != nil || info.Status != models.StatusReady || info.RefitEvery != "" {
			return fmt.Errorf("model %+v %v: want ready without a policy", info, err)
		}
		return nil
	})
	last := info.Version
	replayAlike(t, e)
	if info, err = s.Model("nbp"); err != nil || info.Version != last {
		t.Fatalf("model %+v %v: version %d after the replay, want %d (a replay reads the records)", info, err, info.Version, last)
	}
}
