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
