package api

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"testing"
	"testing/iotest"
)

// TestReadBodyContentLength: the body comes back whole and exact whatever
// Content-Length announces (true, too large, too small, absent) and however
// the reader splits it; over the limit is errTooLarge.
func TestReadBodyContentLength(t *testing.T) {
	const limit = 4096
	for _, n := range []int{0, 1, 511, 512, 513, 1000, limit} {
		body := bytes.Repeat([]byte("abcdefg"), n/7+1)[:n]
		for _, cl := range []int64{int64(n), int64(n) + 100, int64(n) / 2, 0, -1, 10 * limit} {
			for _, half := range []bool{false, true} {
				var rd io.Reader = bytes.NewReader(body)
				if half {
					rd = iotest.HalfReader(rd)
				}
				r := httptest.NewRequest("POST", "/v1/batch", rd)
				r.ContentLength = cl
				got, err := readBody(r, limit)
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("n=%d cl=%d half=%v: %d bytes, err %v", n, cl, half, len(got), err)
				}
			}
		}
	}
	big := bytes.Repeat([]byte("x"), limit+1)
	for _, cl := range []int64{limit + 1, limit, 10} {
		r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(big))
		r.ContentLength = cl
		if _, err := readBody(r, limit); !errors.Is(err, errTooLarge) {
			t.Fatalf("cl=%d: err %v, want errTooLarge", cl, err)
		}
	}
}
