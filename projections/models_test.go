package projections

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

func cdnowModel(name string) Model {
	return Model{Name: name, Kind: ModelKindCLV, CalibrationEnd: 10134, DaysPerUnit: 7, Scorer: "pareto_nbd",
		BGNBD:      ModelParams{P: []float64{0.243, 4.414, 0.793, 2.426}, LL: -9582.4},
		ParetoNBD:  ModelParams{P: []float64{0.553, 10.578, 0.606, 11.669}, LL: -9595.0},
		GammaGamma: ModelParams{P: []float64{6.25, 3.74, 15.44}},
		FittedAsOf: ModelPosition{Seq: 42, Time: 875_577_600_000}, Customers: 2357, Repeaters: 946}
}

// TestModelControl: model.put stores the record with a version that grows
// per put and the first creation time; an invalid put is ignored; delete
// removes it; the digest covers it.
func TestModelControl(t *testing.T) {
	sm, mem := newSM(), store.NewMem()
	seq := uint64(0)
	apply := func(c *Control) Result {
		t.Helper()
		data, err := marshalEntry(c)
		if err != nil {
			t.Fatal(err)
		}
		seq++
		res, err := sm.Apply(mem, seq, SubjectControl, data)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	d0, err := Digest(mem)
	if err != nil {
		t.Fatal(err)
	}
	if res := apply(&Control{Kind: ControlModelPut, Time: 1000, Model: cdnowModel("clv")}); !res.Models {
		t.Error("a put did not report a model change")
	}
	m, err := GetModel(mem, "clv")
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != 1 || m.Created != 1000 || m.ParetoNBD.P[3] != 11.669 || m.FittedAsOf.Seq != 42 {
		t.Errorf("stored model %+v", m)
	}
	apply(&Control{Kind: ControlModelPut, Time: 2000, Model: cdnowModel("clv")})
	bad := cdnowModel("clv")
	bad.GammaGamma.P = []float64{1, -1, 1}
	if res := apply(&Control{Kind: ControlModelPut, Time: 3000, Model: bad}); res.Models {
		t.Error("an invalid put reported a change")
	}
	if m, _ := GetModel(mem, "clv"); m.Version != 2 || m.Created != 1000 || m.Updated != 2000 || m.GammaGamma.P[1] != 3.74 {
		t.Errorf("after a second and an invalid put: %+v", m)
	}
	apply(&Control{Kind: ControlModelPut, Time: 3000, Model: cdnowModel("other")})
	if ms, err := Models(mem); err != nil || len(ms) != 2 || ms[0].Name != "clv" || ms[1].Name != "other" {
		t.Errorf("models %+v, %v", ms, err)
	}
	d1, _ := Digest(mem)
	apply(&Control{Kind: ControlModelDelete, Model: Model{Name: "other"}})
	if _, err := GetModel(mem, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted model: %v", err)
	}
	d2, _ := Digest(mem)
	if bytes.Equal(d0, d1) || bytes.Equal(d1, d2) {
		t.Error("the digest does not cover the models")
	}
	for _, m := range []Model{
		{Name: "Bad Name", Kind: ModelKindCLV},
		func() Model { m := cdnowModel("x"); m.Kind = "propensity"; return m }(),
		func() Model { m := cdnowModel("x"); m.DaysPerUnit = 0; return m }(),
		func() Model { m := cdnowModel("x"); m.Scorer = ""; return m }(),
		func() Model { m := cdnowModel("x"); m.BGNBD.P = m.BGNBD.P[:3]; return m }(),
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%+v: valid", m)
		}
	}
}
