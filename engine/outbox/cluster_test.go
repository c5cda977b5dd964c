package outbox

import (
	"bytes"
	"testing"

	"github.com/aurumcdp/aurum/projections"
)

// A progress record round-trips, and a corrupt or foreign one yields no
// position (so a standby prunes nothing on it) instead of failing.
func TestProgressPositions(t *testing.T) {
	e := &Publisher{opts: Options{Partitions: 4}}
	all := projections.OutboxPrefixes(4)
	p0 := append(append([]byte(nil), all[1]...), 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1)
	g := append(append([]byte(nil), all[0]...), 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0)
	p2 := append(append([]byte(nil), all[3]...), 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2)

	got := e.positions(0, encodePos([][]byte{p0, g}))
	if len(got) != 2 || !bytes.Equal(got[0], p0) || !bytes.Equal(got[1], g) {
		t.Fatalf("partition 0: %q", got)
	}
	got = e.positions(0, encodePos([][]byte{nil, g}))
	if got[0] != nil || !bytes.Equal(got[1], g) {
		t.Fatalf("partition 0 without its own key: %q", got)
	}
	if got := e.positions(2, encodePos([][]byte{p2})); len(got) != 1 || !bytes.Equal(got[0], p2) {
		t.Fatalf("partition 2: %q", got)
	}
	for name, raw := range map[string][]byte{
		"empty":              nil,
		"length past end":    {200, 1, 'p'},
		"bad varint":         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"other partition":    encodePos([][]byte{p0}),
		"prefix only":        encodePos([][]byte{all[3]}),
		"global in slot one": encodePos([][]byte{g}),
	} {
		if got := e.positions(2, raw); len(got) != 1 || got[0] != nil {
			t.Errorf("%s: %q, want no position", name, got)
		}
	}
}
