package bench

import (
	"slices"
	"strings"
	"testing"
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
	tb.add("m", "10", "≥ 1", "2", "baseline", verdict(true))
	tb.add("n", "10", "≥ 3", "2", "—", verdict(false))
	got := tb.String()
	for _, want := range []string{"| m | 10 | ≥ 1 | 2 | baseline | PASS |", "| n | 10 | ≥ 3 | 2 | — | MISS |"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
