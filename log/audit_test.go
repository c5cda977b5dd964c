package log

import (
	"github.com/aurumcdp/aurum/internal/check"
	"github.com/aurumcdp/aurum/internal/testcert"

	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAuditAppendRead(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	l := openLog(t, testOptions(dir))
	if recs, next, err := l.ReadAudit(ctx, 0, time.Time{}, 10); err != nil || len(recs) != 0 || next != 1 {
		t.Fatalf("empty stream: %v, next %d, %v", recs, next, err)
	}
	var mid time.Time
	for i := 1; i <= 10; i++ {
		if i == 6 {
			// Everything appended from here on is stored at or after mid.
			mid = time.Now()
			check.For(t, time.Second, time.Millisecond, func() error {
				if !time.Now().After(mid) {
					return errors.New("clock has not moved")
				}
				return nil
			})
		}
		seq, err := l.AppendAudit(ctx, fmt.Sprintf("a%d", i), payload(i))
		if err != nil || seq != uint64(i) {
			t.Fatalf("AppendAudit %d: seq %d, %v", i, seq, err)
		}
	}
	// A retry with the same id is not stored twice.
	if seq, err := l.AppendAudit(ctx, "a10", payload(10)); err != nil || seq != 10 {
		t.Fatalf("retry: seq %d, %v", seq, err)
	}
	check := func(name string, recs []AuditRecord, next uint64, err error, from, n int, wantNext uint64) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if next != wantNext {
			t.Fatalf("%s: next %d, want %d", name, next, wantNext)
		}
		if len(recs) != n {
			t.Fatalf("%s: %d records, want %d", name, len(recs), n)
		}
		for i, r := range recs {
			if r.Seq != uint64(from+i) || string(r.Data) != string(payload(from+i)) || r.Time.IsZero() {
				t.Fatalf("%s: record %d = seq %d %q %v", name, i, r.Seq, r.Data, r.Time)
			}
		}
	}
	for _, tc := range []struct {
		name     string
		from     uint64
		since    time.Time
		limit    int
		wantFrom int
		wantN    int
		wantNext uint64
	}{
		{"all", 0, time.Time{}, 100, 1, 10, 11},
		{"page", 3, time.Time{}, 4, 3, 4, 7},
		{"past the end", 11, time.Time{}, 10, 0, 0, 11},
		{"since mid", 0, mid, 100, 6, 5, 11},
		{"since mid, limited", 0, mid, 2, 6, 2, 8},
		{"since long ago", 0, mid.Add(-time.Hour), 100, 1, 10, 11},
		{"since the future", 0, time.Now().Add(time.Hour), 100, 0, 0, 11},
	} {
		recs, next, err := l.ReadAudit(ctx, tc.from, tc.since, tc.limit)
		check(tc.name, recs, next, err, tc.wantFrom, tc.wantN, tc.wantNext)
	}

	// Entries survive a restart, and the stream keeps its settings.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, testOptions(dir))
	recs, next, err := l.ReadAudit(ctx, 0, time.Time{}, 100)
	check("after reopen", recs, next, err, 1, 10, 11)
}

// TestAuditCannotBeDeleted goes around the package to the JetStream API, as
// any client of the NATS listener could: deleting or purging audit entries,
// and lifting the deny flags, are refused.
func TestAuditCannotBeDeleted(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	for i := 1; i <= 3; i++ {
		if _, err := l.AppendAudit(ctx, "", payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.MaxAge != 0 || cfg.Retention != jetstream.LimitsPolicy {
		t.Fatalf("stream config: %+v", cfg)
	}
	if err := s.DeleteMsg(ctx, 2); err == nil {
		t.Error("DeleteMsg succeeded")
	}
	if err := s.SecureDeleteMsg(ctx, 2); err == nil {
		t.Error("SecureDeleteMsg succeeded")
	}
	if err := s.Purge(ctx); err == nil {
		t.Error("Purge succeeded")
	}
	// The raw API request too (what any NATS client can send).
	m, err := nc.Request("$JS.API.STREAM.MSG.DELETE."+StreamAudit, []byte(`{"seq":1,"no_erase":true}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var apiResp struct {
		Success bool            `json:"success"`
		Error   json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &apiResp); err != nil || apiResp.Success || len(apiResp.Error) == 0 {
		t.Errorf("raw delete answer: %s", m.Data)
	}
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := js.UpdateStream(ctx, cfg); err == nil {
		t.Error("UpdateStream lifting DenyDelete/DenyPurge succeeded")
	}
	recs, _, err := l.ReadAudit(ctx, 0, time.Time{}, 10)
	if err != nil || len(recs) != 3 {
		t.Fatalf("after the attempts: %d records, %v", len(recs), err)
	}
}

func TestTLSListener(t *testing.T) {
	ctx := testCtx(t)
	caFile, certFile, keyFile := testcert.Write(t)
	opts := testOptions(t.TempDir())
	opts.TLSCertFile, opts.TLSKeyFile = certFile, keyFile
	l := openLog(t, opts)
	if !strings.HasPrefix(l.ClientURL(), "tls://") {
		t.Fatalf("ClientURL %q, want tls://", l.ClientURL())
	}
	// The log's own (in-process) connection works.
	if _, _, err := l.Append(ctx, "aurum.log.batch", "", payload(1)); err != nil {
		t.Fatalf("Append over the in-process connection: %v", err)
	}
	// A client trusting the CA connects over TLS and publishes.
	nc, err := nats.Connect(l.ClientURL(), nats.RootCAs(caFile), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Error("server does not require TLS")
	}
	if err := nc.Publish(IngestPrefix+"web", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	check.For(t, 5*time.Second, 10*time.Millisecond, func() error {
		n, err := ingestPending(ctx, l)
		if err != nil || n != 1 {
			return fmt.Errorf("ingest stream holds %d, %v", n, err)
		}
		return nil
	})
	// A plain client is refused.
	plain := strings.Replace(l.ClientURL(), "tls://", "nats://", 1)
	if nc, err := nats.Connect(plain, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client without TLS connected")
	}
	// A client that does not trust the CA is refused.
	if nc, err := nats.Connect(l.ClientURL(), nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a client not trusting the CA connected")
	}
}

func TestTLSOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Dir: "x", TLSCertFile: "c"},
		{Dir: "x", TLSKeyFile: "k"},
		{URL: "nats://x:4222", TLSCertFile: "c", TLSKeyFile: "k"},
	} {
		o.EnsureDefaults()
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "TLS") {
			t.Errorf("%+v: Validate = %v", o, err)
		}
	}
	o := Options{Dir: t.TempDir(), Listen: "127.0.0.1:-1", TLSCertFile: "/nonexistent/c.pem", TLSKeyFile: "/nonexistent/k.pem"}
	if _, err := Open(testCtx(t), o); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("Open with missing cert files: %v", err)
	}
}
