package engine

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestStatsRing: the ring keeps the last capacity samples, oldest first.
func TestStatsRing(t *testing.T) {
	at := func(i int) time.Time { return time.Unix(int64(i)*10, 0).UTC() }
	for _, tc := range []struct {
		name      string
		capacity  int
		added     int
		wantFirst int // index of the oldest sample kept; -1: none
		wantLen   int
	}{
		{"empty", 3, 0, -1, 0},
		{"partial", 3, 2, 0, 2},
		{"full", 3, 3, 0, 3},
		{"wrapped once", 3, 4, 1, 3},
		{"wrapped many", 3, 10, 7, 3},
		{"capacity one", 1, 5, 4, 1},
		{"zero capacity is one", 0, 2, 1, 1},
		{"an hour", 360, 400, 40, 360},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newStatsRing(tc.capacity)
			for i := 0; i < tc.added; i++ {
				r.add(StatsSample{Time: at(i), EventsPerSecond: float64(i)})
			}
			got := r.samples()
			if len(got) != tc.wantLen {
				t.Fatalf("len %d, want %d", len(got), tc.wantLen)
			}
			for i, s := range got {
				if want := at(tc.wantFirst + i); !s.Time.Equal(want) || s.EventsPerSecond != float64(tc.wantFirst+i) {
					t.Fatalf("sample %d: %v %v, want %v", i, s.Time, s.EventsPerSecond, want)
				}
			}
			// The copy is the caller's: changing it leaves the ring alone.
			if len(got) > 0 {
				got[0].EventsPerSecond = -1
				if r.samples()[0].EventsPerSecond == -1 {
					t.Fatal("samples shares the ring's memory")
				}
			}
		})
	}
}

func TestStatsRate(t *testing.T) {
	for _, tc := range []struct {
		prev, cur float64
		elapsed   time.Duration
		want      float64
	}{
		{0, 100, 10 * time.Second, 10},
		{100, 100, 10 * time.Second, 0},
		{100, 50, 10 * time.Second, 0}, // counter reset
		{0, 10, 0, 0},
		{5, 20, 5 * time.Second, 3},
	} {
		if got := rate(tc.prev, tc.cur, tc.elapsed); got != tc.want {
			t.Errorf("rate(%v, %v, %v) = %v, want %v", tc.prev, tc.cur, tc.elapsed, got, tc.want)
		}
	}
}

// TestStatsSample: a sample's rates are the counters' change over the
// elapsed time; profiles are created minus merged.
func TestStatsSample(t *testing.T) {
	at := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	prev := counters{applied: 100, ingested: 80, created: 10, merges: 2}
	cur := counters{applied: 300, ingested: 180, created: 15, merges: 3}
	got := sample(at.Add(10*time.Second), prev, cur, at, map[string]int64{"buyers": 4})
	if got.EventsPerSecond != 20 || got.IngestedPerSecond != 10 || got.Profiles != 12 || got.Merges != 3 ||
		got.Audiences["buyers"] != 4 || !got.Time.Equal(at.Add(10*time.Second)) {
		t.Fatalf("sample: %+v", got)
	}
}

// TestHistoryFile: the file keeps what the ring keeps across a reopen,
// skips lines that do not parse and samples older than the window, and is
// rewritten to the ring's samples once it holds twice its capacity.
func TestHistoryFile(t *testing.T) {
	at := func(i int) time.Time { return time.Unix(1_800_000_000+int64(i)*10, 0).UTC() }
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	path := filepath.Join(t.TempDir(), historyFileName)
	lines := func() int {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n := 0
		for sc := bufio.NewScanner(f); sc.Scan(); {
			n++
		}
		return n
	}

	ring := newStatsRing(4)
	h, err := openHistoryFile(path, ring, time.Time{}, log)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		s := StatsSample{Time: at(i), EventsPerSecond: float64(i), Audiences: map[string]int64{"a": int64(i)}}
		ring.add(s)
		if err := h.append(s, ring); err != nil {
			t.Fatal(err)
		}
	}
	if got := lines(); got != 7 {
		t.Fatalf("%d lines after 7 samples, want 7 (no rewrite below 8)", got)
	}
	s := StatsSample{Time: at(7), EventsPerSecond: 7}
	ring.add(s)
	if err := h.append(s, ring); err != nil {
		t.Fatal(err)
	}
	if got := lines(); got != 4 {
		t.Fatalf("%d lines after the rewrite, want the ring's 4", got)
	}
	s = StatsSample{Time: at(8), EventsPerSecond: 8}
	ring.add(s)
	if err := h.append(s, ring); err != nil {
		t.Fatal(err)
	}
	h.close()
	// A torn last line, as a crash mid-write leaves it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2027-01-`)
	f.Close()

	for _, tc := range []struct {
		name     string
		capacity int
		since    time.Time
		want     []int // EventsPerSecond of the samples loaded
	}{
		{"all", 10, time.Time{}, []int{4, 5, 6, 7, 8}},
		{"the newest the ring holds", 2, time.Time{}, []int{7, 8}},
		{"inside the window", 10, at(6), []int{6, 7, 8}},
		{"none inside the window", 10, at(9), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newStatsRing(tc.capacity)
			h, err := openHistoryFile(path, r, tc.since, log)
			if err != nil {
				t.Fatal(err)
			}
			h.close()
			var got []int
			for _, s := range r.samples() {
				got = append(got, int(s.EventsPerSecond))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("loaded %v, want %v", got, tc.want)
			}
		})
	}
}
