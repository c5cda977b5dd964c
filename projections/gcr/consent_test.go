package gcr

import (
	"bytes"
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// TestConsentJoin checks that a profile's consent per channel is the latest
// statement by (event time, event id) whichever profile (identifier) it was
// made under and in whichever order profiles merge.
func TestConsentJoin(t *testing.T) {
	stmt := func(id byte, tm int64, src string, consent map[string]bool) addStep {
		rec := track(id, tm, "Consent Updated", nil)
		rec.Source, rec.Consent = src, consent
		return addStep{rec: rec}
	}
	tests := []struct {
		name  string
		a, b  []addStep // under profile 1 (say a cookie) and profile 2 (the email)
		want  map[string]bool
		event map[string]byte // channel → id of the deciding event
	}{
		{"withdrawal under the cookie beats an older grant under the email",
			[]addStep{stmt(1, 10, "web", map[string]bool{"email": false})},
			[]addStep{stmt(2, 5, "crm", map[string]bool{"email": true, "sms": true})},
			map[string]bool{"email": false, "sms": true}, map[string]byte{"email": 1, "sms": 2}},
		{"a later grant beats the withdrawal",
			[]addStep{stmt(1, 10, "web", map[string]bool{"email": false})},
			[]addStep{stmt(2, 20, "crm", map[string]bool{"email": true})},
			map[string]bool{"email": true}, map[string]byte{"email": 2}},
		{"same time: the larger event id wins",
			[]addStep{stmt(9, 10, "web", map[string]bool{"push": true})},
			[]addStep{stmt(3, 10, "web", map[string]bool{"push": false})},
			map[string]bool{"push": true}, map[string]byte{"push": 9}},
		{"a reused event id: the withdrawal wins",
			[]addStep{stmt(4, 10, "web", map[string]bool{"ads": true})},
			[]addStep{stmt(4, 10, "web", map[string]bool{"ads": false})},
			map[string]bool{"ads": false}, map[string]byte{"ads": 4}},
		{"unknown channels on the log are ignored",
			[]addStep{stmt(1, 10, "web", map[string]bool{"fax": false, "web": false})},
			nil,
			map[string]bool{"web": false}, map[string]byte{"web": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(&Options{Partitions: 4})
			var got [][]byte
			for _, order := range [][2]int{{1, 2}, {2, 1}} {
				mem := store.NewMem()
				tx := p.Begin(mem)
				for _, s := range tt.a {
					mustAdd(t, tx, pid(1), s.rec, s.owned...)
				}
				for _, s := range tt.b {
					mustAdd(t, tx, pid(2), s.rec, s.owned...)
				}
				mustFlush(t, tx)
				if len(tt.b) > 0 {
					if err := tx.Merge(pid(byte(order[0])), pid(byte(order[1]))); err != nil {
						t.Fatal(err)
					}
					mustFlush(t, tx)
				} else {
					order[1] = 1
				}
				prof := mustGet(t, p, mem, pid(byte(order[1])))
				if len(prof.Consent) != len(tt.want) {
					t.Fatalf("merge %v: consent %+v, want %v", order, prof.Consent, tt.want)
				}
				for ch, g := range tt.want {
					c := prof.Consent[ch]
					if c.Granted != g || !bytes.Equal(c.Event, eid(tt.event[ch])) {
						t.Errorf("merge %v: %s = %+v, want granted %v by event %d", order, ch, c, g, tt.event[ch])
					}
					if prof.ConsentGranted(ch, !g) != g {
						t.Errorf("merge %v: ConsentGranted(%s) ignores the statement", order, ch)
					}
				}
				prof.ID, prof.MergedFrom = nil, nil
				got = append(got, mustEncode(t, &Profile{ID: pid(0), Consent: prof.Consent}))
			}
			if !bytes.Equal(got[0], got[1]) {
				t.Error("consent depends on the merge direction")
			}
		})
	}
}
