package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// parseStd is Parse with encoding/json only (the reference for the
// scanner).
func parseStd(data []byte, kind Kind, opts ParseOptions) (Event, error) {
	opts = opts.withDefaults()
	if len(data) > opts.MaxEventBytes {
		return Event{}, tooLarge(opts.MaxEventBytes)
	}
	m, ok := decodeObjectStd(data)
	if !ok {
		return Event{}, &FieldError{Field: "", Reason: "body is not a JSON object"}
	}
	return parseMessage(m, kind, opts, true)
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%T %v", err, err)
}

// sameBatch fails unless ParseBatch and parseBatchStd give identical
// events, rejections and errors for data; it reports whether the fast path
// took the body.
func sameBatch(t testing.TB, data []byte, opts ParseOptions) bool {
	t.Helper()
	acc, rej, err := ParseBatch(data, opts)
	sacc, srej, serr := parseBatchStd(data, opts.withDefaults())
	if errText(err) != errText(serr) {
		t.Fatalf("error %s, encoding/json %s\nbody %q", errText(err), errText(serr), data)
	}
	if !reflect.DeepEqual(acc, sacc) {
		t.Fatalf("accepted differ\n got %#v\nwant %#v\nbody %q", acc, sacc, data)
	}
	if !reflect.DeepEqual(rej, srej) {
		t.Fatalf("rejections differ\n got %#v\nwant %#v\nbody %q", rej, srej, data)
	}
	_, _, fast := parseBatchFast(data, opts.withDefaults())
	return fast
}

func sameParse(t testing.TB, data []byte, kind Kind, opts ParseOptions) {
	t.Helper()
	ev, err := Parse(data, kind, opts)
	sev, serr := parseStd(data, kind, opts)
	if errText(err) != errText(serr) {
		t.Fatalf("error %s, encoding/json %s\nbody %q", errText(err), errText(serr), data)
	}
	if !reflect.DeepEqual(ev, sev) {
		t.Fatalf("events differ\n got %#v\nwant %#v\nbody %q", ev, sev, data)
	}
}

// sameValue fails if the scanner accepts data and encoding/json does not,
// or they decode it differently; it reports whether the scanner accepted.
func sameValue(t testing.TB, data []byte) bool {
	t.Helper()
	v, ok := scanValue(data)
	if !ok {
		return false
	}
	sv, sok := decodeValueStd(data)
	if !sok {
		t.Fatalf("scanner accepts what encoding/json refuses: %q", data)
	}
	if !reflect.DeepEqual(v, sv) {
		t.Fatalf("scanner %#v, encoding/json %#v\nfor %q", v, sv, data)
	}
	return true
}

func wrapBatch(items ...string) []byte {
	return []byte(`{"batch":[` + strings.Join(items, ",") + `]}`)
}

func testdataFiles(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	var out [][]byte
	for _, f := range files {
		out = append(out, readTestdata(t, filepath.Base(f)))
	}
	return out
}

// TestScanValueMatchesStd: the scanner gives encoding/json's tree, and
// declines (so encoding/json decides) exactly where it must.
func TestScanValueMatchesStd(t *testing.T) {
	tests := []struct {
		in     string
		accept bool // the scanner takes it itself
	}{
		{`{}`, true}, {` {"a" : 1 } `, true}, {`[]`, true}, {`[ ]`, true}, {`null`, true},
		{`true`, true}, {`false`, true}, {`"x"`, true}, {`0`, true}, {`-0`, true},
		{`-0.5e+10`, true}, {`1E-3`, true}, {`1e400`, true}, {`12345678901234567890`, true},
		{`{"a":1,"a":2}`, true}, {`{"a":{"b":[1,{"c":null}]},"a":"last"}`, true},
		{`"\u00e9\ud83d\ude00\n\t\/\\\""`, true}, {`"\ud800"`, true}, {`"\ud800\u0041"`, true},
		{`"\udc00\ud800"`, true}, {"\"\xff\xfe ok \xc3\"", true}, {"\"\xed\xa0\x80\"", true},
		{"\"caf\xc3\xa9\"", true}, {`{"k\u0065y":"v"}`, true}, {"{\"\xff\":1}", true},
		{`{"a":[]}`, true}, {`{"a":{}}`, true},
		// Refused by both.
		{`01`, false}, {`1.`, false}, {`.5`, false}, {`1e`, false}, {`-`, false}, {`+1`, false},
		{`{"a":1,}`, false}, {`[1,]`, false}, {`{a:1}`, false}, {`{"a" 1}`, false}, {`"\x"`, false},
		{`"\u12"`, false}, {"\"a\x01\"", false}, {`"abc`, false}, {`tru`, false}, {`nul`, false},
		{`{"a":1`, false}, {`[1 2]`, false}, {`"\'"`, false}, {``, false}, {` `, false}, {`NaN`, false},
		// Trailing data: encoding/json's Decoder+Token rules decide.
		{`{} x`, false}, {`{} {`, false}, {`{}}`, false}, {`1 2`, false},
		// Deeper than the scanner goes.
		{strings.Repeat("[", maxScanDepth+1) + strings.Repeat("]", maxScanDepth+1), false},
	}
	for _, tc := range tests {
		if got := sameValue(t, []byte(tc.in)); got != tc.accept {
			t.Errorf("scanValue(%q) ok=%v, want %v", tc.in, got, tc.accept)
		}
		// Parse agrees with encoding/json whichever path it takes.
		sameParse(t, []byte(tc.in), "", testOpts())
	}
}

// TestParseBatchFastMatchesStd: on the samples and hand-made edge cases
// (the generated workload: TestParseBatchFastMatchesStdWorkload), ParseBatch (fast path) and the encoding/json path
// give identical events, rejections and errors, and the fast path takes
// every well-formed body.
func TestParseBatchFastMatchesStd(t *testing.T) {
	opts := testOpts()
	samples := testdataFiles(t)
	for _, b := range samples {
		for _, kind := range fuzzKinds {
			sameParse(t, b, kind, opts)
		}
		if !sameBatch(t, wrapBatch(string(b)), opts) {
			t.Errorf("fast path declined a sample: %s", b)
		}
		body := []byte(`{"sentAt":"2024-01-02T03:04:00Z","batch":[` + string(b) + `,` + string(b) +
			`],"context":{"channel":"pos","library":{"name":"x"},"traits":{"plan":"gold"}},"integrations":{"All":true}}`)
		if !sameBatch(t, body, opts) {
			t.Errorf("fast path declined a batch with context and sentAt")
		}
	}
	// segment_batch.json is itself a batch body.
	if !sameBatch(t, readTestdata(t, "segment_batch.json"), opts) {
		t.Errorf("fast path declined segment_batch.json")
	}

	ev := `{"type":"track","event":"E","userId":"u1","messageId":"m1","properties":{"n":1,"f":1.5,"big":1e400}}`
	edge := []struct {
		body string
		fast bool
	}{
		{`{"batch":[]}`, true},
		{`{"batch":[null,1,"x",[],{}]}`, true},
		{`{"batch":[` + ev + `], "context":null, "sentAt":null}`, true},
		{`{"batch":[` + ev + `], "sentAt":1700000000}`, true},
		{`{"bat\u0063h":[` + ev + `]}`, true},
		{"{\"batch\":[{\"type\":\"track\",\"event\":\"\xff\",\"userId\":\"u\\ud800\"}]}", true},
		{`{"batch":[{"type":"identify","userId":"u","traits":{"email":"A@B.de"},"traits":{"email":"c@d.de"}}]}`, true},
		{`{"batch":[{"type":"identify","userId":12345678901234567890.5,"context":{"externalIds":[{"type":"crm","id":7}]}}]}`, true},
		{`{"writeKey":"k","batch":[` + ev + `],"metadata":{"a":[1,2,{"b":null}]}}`, true},
		{`{"batch":[` + ev + `],"context":{"channel":"pos"}}`, true},
		{`{"batch":[{"type":"track","event":"E","anonymousId":"a","context":{"channel":"web","device":{"type":"iOS"}}}],"context":{"channel":"pos","device":{"id":"d"}}}`, true},
		{`{"batch":[` + ev + `],"context":"x"}`, false},
		{`{"batch":[` + ev + `],"sentAt":"yesterday"}`, false},
		{`{"batch":[` + ev + `],"sentAt":{}}`, false},
		{`{"batch":null}`, false},
		{`{"batch":{}}`, false},
		{`{"batch":"x"}`, false},
		{`{}`, false},
		{`[]`, false},
		{`{"batch":[` + ev + `]} x`, false},
		{`{"batch":[` + ev + `]}{}`, false},
		{`{"batch":[` + ev + `],"batch":[]}`, false},
		{`{"Batch":[` + ev + `]}`, false},
		{`{"batch":[` + ev + `],"SENTAT":"2024-01-01T00:00:00Z"}`, false},
		{`{"batch":[` + ev + `],"ſentAt":"2024-01-01T00:00:00Z"}`, false},
		{`{"batch":[` + ev + `],"context":{"a":1},"Context":{"b":2}}`, false},
		{`{"batch":[` + ev + `,]}`, false},
		{`{"batch":[` + ev + `]`, false},
		{`{"batch":[` + strings.Repeat("[", maxScanDepth+1) + strings.Repeat("]", maxScanDepth+1) + `]}`, false},
		{`{"batch":[{"type":"track","event":"E","userId":"u","properties":{"pad":"` + strings.Repeat("x", 9000) + `"}}]}`, true},
		{"{\"batch\":[{\"type\":\"track\",\"event\":\"E\",\"userId\":\"u\",\"properties\":{\"k\\u00e9y\":1,\"k\u00e9y\":2,\"\xff\":3,\"\\ud800\":4,\"\xef\xbf\xbd\":5}}]}", true},
		{`{"batch":[{"type":"track","event":"E","userId":"u","properties":{` + manyKeys(1024) + `}},` + ev + `]}`, true},
	}
	small := opts
	small.MaxEventBytes = 8 << 10
	for _, tc := range edge {
		for _, o := range []ParseOptions{opts, small} {
			if got := sameBatch(t, []byte(tc.body), o); got != tc.fast {
				t.Errorf("fast path took=%v, want %v: %.120s", got, tc.fast, tc.body)
			}
		}
	}
}

// TestParseBatchFastRawIsCopied: a rejection's Raw does not alias the body
// (the caller may reuse it).
func TestParseBatchFastRawIsCopied(t *testing.T) {
	body := []byte(`{"batch":[{"type":"nope"}]}`)
	_, rej, err := ParseBatch(body, testOpts())
	if err != nil || len(rej) != 1 {
		t.Fatalf("rej %v err %v", rej, err)
	}
	want := string(rej[0].Raw)
	copy(body, bytes.Repeat([]byte("#"), len(body)))
	if string(rej[0].Raw) != want || want != `{"type":"nope"}` {
		t.Fatalf("raw %q changed with the body (was %q)", rej[0].Raw, want)
	}
}

// FuzzScanValue: whatever the scanner accepts, encoding/json accepts with
// the same tree.
func FuzzScanValue(f *testing.F) {
	seedTestdata(f, func(b []byte) { f.Add(b) })
	for _, s := range []string{`{"a":"\ud83d\ude00","a":[1,-0.5e3,true,null]}`, "\"\xff\xc3\"", `"\ud800\u0041"`, `{"":{}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameValue(t, data)
	})
}

// FuzzParseBatchFastStd: ParseBatch and the encoding/json path agree on
// every body, and Parse and parseStd on every event.
func FuzzParseBatchFastStd(f *testing.F) {
	seedTestdata(f, func(b []byte) {
		f.Add(b, uint8(0))
		f.Add(append(append([]byte(`{"sentAt":"2024-01-02T03:04:00Z","batch":[`), b...), `],"context":{"channel":"pos","traits":{"a":1}}}`...), uint8(1))
	})
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		opts := fuzzOpts(k)
		sameBatch(t, data, opts)
		sameParse(t, data, fuzzKinds[int(k)%len(fuzzKinds)], opts)
	})
}

// manyKeys returns n distinct "kI":I members, then the first few again
// (duplicates: the last wins).
func manyKeys(n int) string {
	var b strings.Builder
	for i := range n + 3 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i%n, i)
	}
	return b.String()
}

// TestConvertNumbers: numbers in every position of a tree follow the
// rules (int64 when integral and in range, else float64, else the text),
// checked against the rules written plainly; other values stay as they
// are.
func TestConvertNumbers(t *testing.T) {
	ref := func(s string) any {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) {
			return f
		}
		return s
	}
	nums := []string{"0", "-0", "7", "-12", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809", "1.0", "0.5", "-2.25", "1e3", "1E3", "1e-3",
		"2.5E+2", "1e308", "1e309", "-1e400", "12345678901234567890123", "0.1e1"}
	for _, n := range nums {
		tree := map[string]any{"n": json.Number(n), "s": "x", "b": true, "z": nil,
			"a": []any{json.Number(n), "y", map[string]any{"n": json.Number(n)}}}
		convertNumbers(tree)
		want := ref(n)
		inner := tree["a"].([]any)
		if tree["n"] != want || inner[0] != want || inner[2].(map[string]any)["n"] != want {
			t.Errorf("%s: got %#v %#v %#v, want %#v", n, tree["n"], inner[0], inner[2], want)
		}
		if tree["s"] != "x" || tree["b"] != true || tree["z"] != nil || inner[1] != "y" || len(tree) != 5 {
			t.Errorf("%s: other values changed: %#v", n, tree)
		}
	}
}
