package audience

import "testing"

// TestStable checks the static analysis behind Step.Settled: an audience is
// stable only when its rule ignores time, is false on an empty profile and
// lies outside every in_audience cycle.
func TestStable(t *testing.T) {
	for _, tc := range []struct {
		rules  map[string]string
		stable map[string]bool
	}{
		{map[string]string{
			"traits":  `traits.tier == "gold"`,
			"count":   `count("Order Completed") >= 2`,
			"window":  `count("Order Completed", "30d") >= 1`,
			"days":    `days_since("Order Completed") > 3`,
			"zero":    `count("Order Completed") == 0`,
			"absent":  `not exists(traits.tier)`,
			"chain":   `in_audience("traits") and count("Page") >= 1`,
			"negated": `not in_audience("traits")`,
			"stats":   `first_seen < date("2026-01-01")`,
		}, map[string]bool{"traits": true, "count": true, "window": false, "days": false, "zero": false,
			"absent": false, "chain": true, "negated": false, "stats": true}},
		{map[string]string{ // a cycle: nothing is stable
			"a": `in_audience("b") or traits.x == 1`,
			"b": `in_audience("a") and traits.y == 1`,
			"c": `traits.z == 1`,
		}, map[string]bool{"a": false, "b": false, "c": false}},
		{map[string]string{"self": `in_audience("self") or traits.x == 1`}, map[string]bool{"self": false}},
	} {
		var defs []Definition
		for n, r := range tc.rules {
			defs = append(defs, Definition{Name: n, Rule: r})
		}
		s, err := Compile(defs)
		if err != nil {
			t.Fatal(err)
		}
		for n, want := range tc.stable {
			a, _ := s.Get(n)
			if a.Stable() != want {
				t.Errorf("%s (%s): stable %v, want %v", n, tc.rules[n], a.Stable(), want)
			}
		}
	}
}

// TestSettledSkipsStableAudiences shows what Step.Settled changes: a stable
// audience whose inputs did not change is not evaluated on a timer, so a
// membership that disagrees with its rule (which a settled profile never
// has) stays as it is; without Settled the timer re-evaluates it.
func TestSettledSkipsStableAudiences(t *testing.T) {
	s, err := Compile([]Definition{{Name: "gold", Rule: `traits.tier == "gold"`}, {Name: "recent", Rule: `count("Order Completed", "1d") >= 1`}})
	if err != nil {
		t.Fatal(err)
	}
	traits := func(string) (any, bool) { return "gold", true }
	for _, settled := range []bool{false, true} {
		st := &State{}
		trs, err := s.Apply(st, Step{Now: 1000, Timer: true, Settled: settled, Traits: traits})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(trs); settled && got != 0 || !settled && got != 1 {
			t.Errorf("settled %v: %d transitions %+v", settled, got, trs)
		}
		// A trait the rule reads is set: evaluated either way.
		st = &State{}
		trs, err = s.Apply(st, Step{Now: 1000, Settled: settled, Traits: traits,
			Events: []Event{{Time: 1000, HasTraits: true, Traits: []string{"tier"}}}})
		if err != nil || len(trs) != 1 || !trs[0].Entered {
			t.Errorf("settled %v, tier set: %+v %v", settled, trs, err)
		}
		// Another trait: skipped only when settled.
		st = &State{}
		trs, _ = s.Apply(st, Step{Now: 1000, Settled: settled, Traits: traits,
			Events: []Event{{Time: 1000, HasTraits: true, Traits: []string{"nickname"}}}})
		if settled && len(trs) != 0 || !settled && len(trs) != 1 {
			t.Errorf("settled %v, nickname set: %+v", settled, trs)
		}
	}
	if s.Quiet([]Event{{Name: "Order Completed", Time: 1}}) || !s.Quiet([]Event{{Name: "Page", Time: 1}}) ||
		s.Quiet([]Event{{HasTraits: true, Traits: []string{"tier"}}}) || !s.Quiet([]Event{{HasTraits: true, Traits: []string{"x"}}}) ||
		s.Quiet([]Event{{HasTraits: true}}) {
		t.Error("Quiet")
	}
}

// TestStateUnchanged checks the allocation-free check of a stored state
// against what an evaluation would write.
func TestStateUnchanged(t *testing.T) {
	s, err := Compile([]Definition{{Name: "recent", Rule: `count("A", "1d") >= 1`}, {Name: "ever", Rule: `count("B") >= 1`}})
	if err != nil {
		t.Fatal(err)
	}
	const day = 86400000
	st := &State{}
	if _, err := s.Apply(st, Step{Now: 10 * day, Events: []Event{{Name: "A", Time: 10 * day, ID: []byte{1}}}}); err != nil {
		t.Fatal(err)
	}
	data, _ := EncodeState(st)
	if st.Timer != 11*day || !s.StateUnchanged(data, 10*day+1) {
		t.Fatalf("timer %d: a fresh state is unchanged", st.Timer)
	}
	if s.StateUnchanged(data, 11*day) {
		t.Error("a due timer (and an entry to evict) must not count as unchanged")
	}
	for i := 1; i < len(data); i++ {
		if s.StateUnchanged(data[:i], 10*day+1) {
			t.Errorf("truncated at %d: unchanged", i)
		}
	}
	if s.StateUnchanged(append(data[:len(data):len(data)], 0), 10*day+1) {
		t.Error("trailing byte: unchanged")
	}
	if s.StateUnchanged(appendStateV1(nil, st), 10*day+1) {
		t.Error("a state of version 1 (evaluated, so rewritten in version 2): unchanged")
	}
	other, _ := Compile([]Definition{{Name: "recent", Rule: `count("A", "1d") >= 1`}})
	if other.StateUnchanged(data, 10*day+1) {
		t.Error("an aggregate the set lacks: unchanged")
	}
	// A stored state decoded through the set shares its strings and equals
	// the plain decoding.
	a, err1 := DecodeState(data)
	b, err2 := s.DecodeState(data)
	ea, _ := EncodeState(a)
	eb, _ := EncodeState(b)
	if err1 != nil || err2 != nil || string(ea) != string(eb) || string(ea) != string(data) {
		t.Error("DecodeState through the set differs")
	}
}
