package store

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"testing"
)

// This file holds the conformance suite every Reader / ReadWriter
// implementation must pass. Implementations are plugged in by the tests in
// store_test.go.

// newReaderFunc returns a Reader whose contents are exactly data.
type newReaderFunc func(t *testing.T, data map[string]string) Reader

// newReadWriterFunc returns an empty ReadWriter.
type newReadWriterFunc func(t *testing.T) ReadWriter

// suiteData is the fixed content used by the read tests. It includes keys
// at the edges of the byte order (empty-suffix, 0x00, 0xff).
var suiteData = map[string]string{
	"a":            "1",
	"a\x00":        "2",
	"ab":           "3",
	"b":            "4",
	"b\xff":        "5",
	"b\xff\xff":    "6",
	"c":            "7",
	"\xff":         "8",
	"\xff\xff\x01": "9",
}

type kv struct{ k, v string }

func collect(t *testing.T, r Reader, lower, upper []byte, reverse bool, limit int) []kv {
	t.Helper()
	var out []kv
	err := r.Scan(lower, upper, reverse, func(k, v []byte) bool {
		out = append(out, kv{string(k), string(v)})
		return limit <= 0 || len(out) < limit
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

// expect computes the expected scan result from data.
func expect(data map[string]string, lower, upper []byte, reverse bool, limit int) []kv {
	var keys []string
	for k := range data {
		if bytes.Compare([]byte(k), lower) >= 0 && (upper == nil || bytes.Compare([]byte(k), upper) < 0) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if reverse {
		for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
			keys[i], keys[j] = keys[j], keys[i]
		}
	}
	if limit > 0 && len(keys) > limit {
		keys = keys[:limit]
	}
	out := []kv{}
	for _, k := range keys {
		out = append(out, kv{k, data[k]})
	}
	return out
}

func equalKVs(a, b []kv) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// runReaderSuite checks Get and Scan on a Reader holding suiteData.
func runReaderSuite(t *testing.T, newReader newReaderFunc) {
	t.Run("Get", func(t *testing.T) {
		r := newReader(t, suiteData)
		for k, want := range suiteData {
			got, err := r.Get([]byte(k))
			if err != nil || string(got) != want {
				t.Errorf("Get(%q) = %q, %v; want %q", k, got, err, want)
			}
		}
		for _, k := range []string{"", "a\x01", "aa", "bb", "\xff\xff", "zz"} {
			if _, err := r.Get([]byte(k)); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q) err = %v; want ErrNotFound", k, err)
			}
		}
	})
	t.Run("GetReturnsCopy", func(t *testing.T) {
		r := newReader(t, suiteData)
		v, err := r.Get([]byte("ab"))
		if err != nil {
			t.Fatal(err)
		}
		v[0] = 'X'
		v2, err := r.Get([]byte("ab"))
		if err != nil || string(v2) != "3" {
			t.Fatalf("after mutating returned value, Get = %q, %v; want \"3\"", v2, err)
		}
	})
	t.Run("ScanCopyOut", func(t *testing.T) {
		// Values copied out of a scan stay valid and mutating them does not
		// change the store.
		r := newReader(t, suiteData)
		var keep [][]byte
		if err := r.Scan(nil, nil, false, func(k, v []byte) bool {
			c := append([]byte(nil), v...)
			c[0] = 'X'
			keep = append(keep, c)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(keep) != len(suiteData) {
			t.Fatalf("scanned %d keys, want %d", len(keep), len(suiteData))
		}
		got := collect(t, r, nil, nil, false, 0)
		if want := expect(suiteData, nil, nil, false, 0); !equalKVs(got, want) {
			t.Fatalf("after copy-out scan: %q, want %q", got, want)
		}
	})
	cases := []struct {
		name         string
		lower, upper []byte
		limit        int
	}{
		{"all", nil, nil, 0},
		{"empty lower nil upper", []byte{}, nil, 0},
		{"lower only", []byte("ab"), nil, 0},
		{"bounded", []byte("a\x00"), []byte("b\xff"), 0},
		{"upper exclusive", []byte("a"), []byte("b"), 0},
		{"prefix b", []byte("b"), PrefixEnd([]byte("b")), 0},
		{"prefix a", []byte("a"), PrefixEnd([]byte("a")), 0},
		{"prefix 0xff", []byte("\xff"), PrefixEnd([]byte("\xff")), 0},
		{"empty range", []byte("b"), []byte("b"), 0},
		{"inverted range", []byte("c"), []byte("a"), 0},
		{"no keys in range", []byte("bb"), []byte("bz"), 0},
		{"past end", []byte("\xff\xff\xff"), nil, 0},
		{"early stop 1", nil, nil, 1},
		{"early stop 3", []byte("a"), []byte("c"), 3},
	}
	for _, tc := range cases {
		for _, reverse := range []bool{false, true} {
			t.Run(fmt.Sprintf("Scan/%s/reverse=%v", tc.name, reverse), func(t *testing.T) {
				r := newReader(t, suiteData)
				got := collect(t, r, tc.lower, tc.upper, reverse, tc.limit)
				want := expect(suiteData, tc.lower, tc.upper, reverse, tc.limit)
				if len(got) == 0 && len(want) == 0 {
					return
				}
				if !equalKVs(got, want) {
					t.Fatalf("Scan(%q, %q, reverse=%v) = %q, want %q", tc.lower, tc.upper, reverse, got, want)
				}
			})
		}
	}
}

// runReadWriterSuite checks a ReadWriter: the read suite over data written
// through it, then writes.
func runReadWriterSuite(t *testing.T, newRW newReadWriterFunc) {
	runReaderSuite(t, func(t *testing.T, data map[string]string) Reader {
		rw := newRW(t)
		// Write noise first, then overwrite/delete it, so the reader sees
		// the result of a history, not just fresh inserts.
		for k := range data {
			mustSet(t, rw, k, "old-"+k)
		}
		mustSet(t, rw, "a\x01", "deleted")
		mustSet(t, rw, "bb", "deleted")
		mustDelete(t, rw, "a\x01")
		mustDelete(t, rw, "bb")
		for k, v := range data {
			mustSet(t, rw, k, v)
		}
		return rw
	})
	t.Run("SetCopiesArguments", func(t *testing.T) {
		rw := newRW(t)
		k, v := []byte("key"), []byte("value")
		mustSetB(t, rw, k, v)
		k[0], v[0] = 'X', 'X'
		got, err := rw.Get([]byte("key"))
		if err != nil || string(got) != "value" {
			t.Fatalf("Get = %q, %v; want \"value\" (Set must copy)", got, err)
		}
		if _, err := rw.Get([]byte("Xey")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("mutated key visible: %v", err)
		}
	})
	t.Run("OverwriteAndDelete", func(t *testing.T) {
		rw := newRW(t)
		mustSet(t, rw, "k", "1")
		mustSet(t, rw, "k", "2")
		if got, err := rw.Get([]byte("k")); err != nil || string(got) != "2" {
			t.Fatalf("after overwrite Get = %q, %v", got, err)
		}
		mustDelete(t, rw, "k")
		if _, err := rw.Get([]byte("k")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete err = %v; want ErrNotFound", err)
		}
		mustDelete(t, rw, "never-existed") // deleting a missing key is not an error
		if got := collect(t, rw, nil, nil, false, 0); len(got) != 0 {
			t.Fatalf("store not empty: %q", got)
		}
		mustSet(t, rw, "k", "3")
		if got := collect(t, rw, nil, nil, true, 0); !equalKVs(got, []kv{{"k", "3"}}) {
			t.Fatalf("after re-set: %q", got)
		}
	})
	t.Run("EmptyValue", func(t *testing.T) {
		rw := newRW(t)
		mustSet(t, rw, "e", "")
		got, err := rw.Get([]byte("e"))
		if err != nil || len(got) != 0 {
			t.Fatalf("Get empty value = %q, %v", got, err)
		}
	})
}

func mustSet(t *testing.T, w Writer, k, v string) { t.Helper(); mustSetB(t, w, []byte(k), []byte(v)) }

func mustSetB(t *testing.T, w Writer, k, v []byte) {
	t.Helper()
	if err := w.Set(k, v); err != nil {
		t.Fatalf("Set(%q): %v", k, err)
	}
}

func mustDelete(t *testing.T, w Writer, k string) {
	t.Helper()
	if err := w.Delete([]byte(k)); err != nil {
		t.Fatalf("Delete(%q): %v", k, err)
	}
}
