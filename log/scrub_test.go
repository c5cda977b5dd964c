package log

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestScanAndSecureDelete: a headers-only scan finds output messages by
// their Aurum-Profile header (from a start time), a full scan sees
// payloads, and a secure delete removes a message and its bytes from the
// stream's files while the others stay.
func TestScanAndSecureDelete(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, testOptions(dir))
	ctx := testCtx(t)
	start := time.Now()
	for i := range 6 {
		hdr := map[string]string{HeaderProfile: fmt.Sprintf("P%d", i%2)}
		data := []byte(fmt.Sprintf(`{"secret":"Canary-Payload-%d"}`, i))
		if _, _, err := l.AppendWithHeaders(ctx, AudiencePrefix+"a.entered", fmt.Sprintf("m%d", i), hdr, data); err != nil {
			t.Fatal(err)
		}
	}
	var p1 []uint64
	err := l.Scan(ctx, StreamOut, ScanOptions{HeadersOnly: true, Since: start.Add(-time.Minute), Batch: 2}, func(m ScanMsg) error {
		if m.Data != nil {
			t.Errorf("headers-only scan delivered a payload: %q", m.Data)
		}
		if v := m.Header[HeaderProfile]; len(v) == 1 && v[0] == "P1" {
			p1 = append(p1, m.Seq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p1) != "[2 4 6]" {
		t.Fatalf("P1 messages at %v, want [2 4 6]", p1)
	}
	// A start time after every message: nothing.
	n := 0
	if err := l.Scan(ctx, StreamOut, ScanOptions{Since: time.Now().Add(time.Hour)}, func(ScanMsg) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("scan from the future: %d messages, %v", n, err)
	}
	for _, seq := range p1 {
		if err := l.SecureDelete(ctx, StreamOut, seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SecureDelete(ctx, StreamOut, p1[0]); err != nil {
		t.Fatalf("deleting a deleted message: %v", err)
	}
	var left []string
	if err := l.Scan(ctx, StreamOut, ScanOptions{}, func(m ScanMsg) error { left = append(left, string(m.Data)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(left) != 3 {
		t.Fatalf("left %v, want the 3 P0 messages", left)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		for i := range 6 {
			if bytes.Contains(data, []byte(fmt.Sprintf("Canary-Payload-%d", i))) {
				found[fmt.Sprint(i)] = true
			}
		}
		return nil
	})
	if found["1"] || found["3"] || found["5"] || !found["0"] || !found["2"] || !found["4"] {
		t.Fatalf("payloads on disk after secure delete of 1, 3, 5: %v", found)
	}
}
