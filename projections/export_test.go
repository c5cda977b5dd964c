package projections

import (
	"testing"

	"github.com/aurumcdp/aurum/store"
)

// TestExportScheduleControl: export.schedule stores the schedule with the
// record's time; an invalid one (interval under 1m, keep under 1, unknown
// field, not JSON) is ignored alike by every replay; a later valid one
// replaces it.
func TestExportScheduleControl(t *testing.T) {
	sm, mem := newSM(), store.NewMem()
	seq := uint64(0)
	apply := func(cfg string, tm int64) {
		t.Helper()
		data, err := marshalEntry(&Control{Kind: ControlExportSchedule, Config: []byte(cfg), Time: tm})
		if err != nil {
			t.Fatal(err)
		}
		seq++
		if _, err := sm.Apply(mem, seq, SubjectControl, data); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := ExportScheduleOf(mem); ok || err != nil {
		t.Fatalf("before any record: ok %v, %v", ok, err)
	}
	good, err := EncodeExportSchedule(ExportSchedule{IntervalMs: 3_600_000, Keep: 24, Personal: true, Updated: 99})
	if err != nil {
		t.Fatal(err)
	}
	apply(string(good), 1000)
	want := ExportSchedule{IntervalMs: 3_600_000, Keep: 24, Personal: true, Updated: 1000}
	for _, bad := range []string{
		`{"interval_ms":59999,"keep":1}`,
		`{"interval_ms":60000,"keep":0}`,
		`{"interval_ms":60000,"keep":2,"every":1}`,
		`not json`,
	} {
		apply(bad, 2000)
		if s, ok, err := ExportScheduleOf(mem); !ok || err != nil || s != want {
			t.Fatalf("after %s: %+v %v %v, want %+v", bad, s, ok, err, want)
		}
	}
	apply(`{"interval_ms":60000,"keep":1,"personal":false}`, 3000)
	if s, _, _ := ExportScheduleOf(mem); s != (ExportSchedule{IntervalMs: 60000, Keep: 1, Updated: 3000}) {
		t.Fatalf("after a second schedule: %+v", s)
	}
}
