package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	wlg "github.com/aurumcdp/aurum/internal/workload"
)

func TestParseSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{"10000,100000", []int{10000, 100000}, false},
		{" 10 , 20 ,", []int{10, 20}, false},
		{"1000000", []int{1000000}, false},
		{"", nil, true},
		{"10,x", nil, true},
		{"0", nil, true},
		{"20000000", nil, true},
	} {
		got, err := parseSizes(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("parseSizes(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("parseSizes(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseVmHWM(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   int64
		err    bool
	}{
		{"Name:\tbench\nVmPeak:\t  900 kB\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n", 123456 << 10, false},
		{"Name:\tbench\n", 0, true},
		{"VmHWM:\t12 MB\n", 0, true},
		{"VmHWM:\tmany kB\n", 0, true},
	} {
		got, err := parseVmHWM([]byte(tc.status))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseVmHWM(%q) = %d, %v; want %d, error %v", tc.status, got, err, tc.want, tc.err)
		}
	}
}

func TestParseStatusKB(t *testing.T) {
	status := []byte("Name:\tbench\nVmHWM:\t  2048 kB\nVmRSS:\t 1024 kB\n")
	for _, tc := range []struct {
		field string
		want  int64
		err   bool
	}{
		{"VmHWM", 2048 << 10, false},
		{"VmRSS", 1024 << 10, false},
		{"VmSwap", 0, true},
		{"Vm", 0, true}, // a prefix of a field is not the field
	} {
		got, err := parseStatusKB(status, tc.field)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseStatusKB(%s) = %d, %v; want %d, error %v", tc.field, got, err, tc.want, tc.err)
		}
	}
}

func TestGrowth(t *testing.T) {
	for _, tc := range []struct {
		v, first     int64
		people, runs int
		want         string
	}{
		{300, 200, 10000, 2, "1.50× the 10000-profile run"},
		{200, 200, 10000, 1, "baseline (smallest size)"},
		{200, 0, 10000, 2, "baseline (smallest size)"},
	} {
		if got := growth(tc.v, tc.first, tc.people, tc.runs); got != tc.want {
			t.Errorf("growth(%d, %d, %d, %d) = %q, want %q", tc.v, tc.first, tc.people, tc.runs, got, tc.want)
		}
	}
	if got := mib(3 << 20); got != "3 MiB" {
		t.Errorf("mib = %q", got)
	}
}

func TestWithMessageID(t *testing.T) {
	in := []byte(`{"messageId":"b-1","type":"track"}`)
	if got := string(withMessageID(in, "n-42")); got != `{"messageId":"n-42","type":"track"}` {
		t.Errorf("withMessageID = %s", got)
	}
	if got := string(withMessageID([]byte(`{"type":"track"}`), "x")); got != `{"type":"track"}` {
		t.Errorf("without a messageId: %s", got)
	}
}

func TestTable(t *testing.T) {
	var tb table
	tb.add("m: one", "10", "≥ 1", "2", "1", "2×", verdict(true), true)
	tb.add("n (two)", "10", "≥ 3", "2", "1", "2×", verdict(false), true)
	tb.add("o", "—", "—", "2", "—", "—", "—", false)
	got := tb.String()
	for _, want := range []string{
		"| m: one | 10 | ≥ 1 | 2 | 1 | 2× | PASS |",
		"| n (two) | 10 | ≥ 3 | 2 | 1 | 2× | MISS |",
		"| o | — | — | 2 | — | — | — |",
		"Issue #15 targets: 1 PASS, 1 MISS (missed: n @10).",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	for _, tc := range []struct {
		n, steps int
		want     [][]int
	}{
		{1, 2, [][]int{{0, 1}}},
		{2, 2, [][]int{{1, 0}, {0, 1}}},
		{3, 2, [][]int{{0, 1}, {1, 0}, {0, 1}}},
		{3, 4, [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {0, 1, 2, 3}}},
	} {
		for r := range tc.n {
			if got := roundOrder(r, tc.n, tc.steps); !slices.Equal(got, tc.want[r]) {
				t.Errorf("roundOrder(%d, %d, %d) = %v, want %v", r, tc.n, tc.steps, got, tc.want[r])
			}
		}
	}
}

// TestRunRounds checks that runRounds runs each round's steps in
// roundOrder, files each figure under its step, and stops at an error.
func TestRunRounds(t *testing.T) {
	var ran []string
	step := func(name string, rate float64) func(int) (fig, error) {
		return func(r int) (fig, error) {
			ran = append(ran, fmt.Sprintf("%s%d", name, r+1))
			return fig{Events: int(rate) * (r + 1), Seconds: 1, CPUns: int64(1000 * (r + 1))}, nil
		}
	}
	out, err := runRounds(3, step("b", 10), step("m", 20))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b1", "m1", "m2", "b2", "b3", "m3"}; !slices.Equal(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	if got := []float64{out[0][0].rate(), out[1][1].rate(), out[2][0].rate()}; !slices.Equal(got, []float64{10, 40, 30}) {
		t.Errorf("figures filed wrongly: %v", got)
	}
	if b, m := medianRate(column(out, 0)), medianRate(column(out, 1)); b != 20 || m != 40 {
		t.Errorf("medians %v and %v, want 20 and 40", b, m)
	}
	if c := medianCPU(column(out, 1)); c != 0.05 { // 2000 ns over 40 events
		t.Errorf("median CPU %v µs/event, want 0.05", c)
	}
	ratio, res := ratioVerdict(column(out, 1), column(out, 0), 2, "base")
	if ratio != "2.00× base" || res != "PASS" {
		t.Errorf("ratioVerdict = %q, %q", ratio, res)
	}
	if _, res := ratioVerdict(column(out, 0), column(out, 1), 0.6, "x"); res != "MISS" {
		t.Errorf("0.5× against 0.6: %s", res)
	}

	ran = nil
	_, err = runRounds(2, step("b", 1), func(int) (fig, error) { return fig{}, errors.New("boom") })
	if err == nil || !strings.Contains(err.Error(), "round 1") || !slices.Equal(ran, nil) {
		t.Errorf("err %v after %v; want round 1 to fail before its baseline", err, ran)
	}
}

func TestMedianEven(t *testing.T) {
	figs := []fig{{Events: 10, Seconds: 1}, {Events: 30, Seconds: 1}}
	if m := medianRate(figs); m != 20 {
		t.Errorf("median of 10 and 30 = %v", m)
	}
	if m := medianRate(nil); m != 0 {
		t.Errorf("median of none = %v", m)
	}
}

func TestParseLoadAverage(t *testing.T) {
	if v := parseLoadAverage("4.52 3.10 2.00 3/900 12345\n"); v != 4.52 {
		t.Errorf("load %v", v)
	}
	if v := parseLoadAverage(""); v != 0 {
		t.Errorf("empty: %v", v)
	}
}

// TestWorkloadFile writes a small workload to a file and reads it back:
// every event, in order, with its source.
func TestWorkloadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events")
	n, err := writeWorkload(path, wlg.New(wlg.Config{People: 30, Seed: 4, Days: 1}))
	if err != nil || n == 0 {
		t.Fatalf("%d events, %v", n, err)
	}
	g := wlg.New(wlg.Config{People: 30, Seed: 4, Days: 1})
	i := 0
	err = readWorkload(path, func(src int, js []byte) error {
		ev, ok := g.Next()
		if !ok || wlg.Sources[src] != ev.Source || !bytes.Equal(js, ev.JSON) {
			return fmt.Errorf("event %d: source %s, %s; want %s, %s", i, wlg.Sources[src], js, ev.Source, ev.JSON)
		}
		i++
		return nil
	})
	if err != nil || i != n {
		t.Fatalf("read %d of %d: %v", i, n, err)
	}
	// A truncated file is an error, not a short read.
	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:len(data)-3], 0o644)
	if err := readWorkload(path, func(int, []byte) error { return nil }); err == nil {
		t.Error("a truncated workload file read without error")
	}
}

// TestExampleAudiencesAreTheDocs checks that the benchmark's audiences are
// the product's eight examples (docs/rules.md "Examples").
func TestExampleAudiencesAreTheDocs(t *testing.T) {
	data, err := os.ReadFile("../docs/rules.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "## Examples")
	if !ok {
		t.Fatal("docs/rules.md has no Examples section")
	}
	var docs []string
	for _, line := range strings.Split(after, "\n") {
		if strings.HasPrefix(line, "## ") {
			break
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[3]), "`") {
			continue
		}
		docs = append(docs, strings.Trim(strings.TrimSpace(cells[3]), "`"))
	}
	var ours []string
	for _, r := range exampleAudiences {
		ours = append(ours, r)
	}
	slices.Sort(docs)
	slices.Sort(ours)
	if len(docs) != 8 || !slices.Equal(docs, ours) {
		t.Errorf("docs/rules.md examples:\n%s\nbench's:\n%s", strings.Join(docs, "\n"), strings.Join(ours, "\n"))
	}
}

// TestCPUWindows: a windowed CPU profile goes on in a new file every
// window, each a complete profile, and stop ends it (a profile can be
// started again at once).
func TestCPUWindows(t *testing.T) {
	dir := t.TempDir()
	stop, err := startCPUWindows(dir, "w", 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(450 * time.Millisecond); time.Now().Before(end); {
	}
	stop()
	files, err := filepath.Glob(filepath.Join(dir, "cpu-w*.pprof"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("%d profile files in 450 ms of 100 ms windows: %v", len(files), files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Fatalf("%s: empty or missing (%v)", f, err)
		}
	}
	stop, err = startCPUWindows(dir, "again", 0)
	if err != nil {
		t.Fatalf("profiling again after stop: %v", err)
	}
	stop()
}
