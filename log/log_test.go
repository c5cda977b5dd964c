package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/aurumcdp/aurum/internal/check"
)

func testOptions(dir string) Options {
	return Options{Dir: dir, Listen: "127.0.0.1:-1"}
}

func openLog(t testing.TB, opts Options) *Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func payload(i int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, i)) }

// readN reads n entries and checks they are from, from+1, ... with payload(seq).
func readN(t *testing.T, ctx context.Context, r *Reader, from uint64, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next #%d: %v", i, err)
		}
		want := from + uint64(i)
		if e.Seq != want {
			t.Fatalf("Next #%d: seq %d, want %d", i, e.Seq, want)
		}
		if !bytes.Equal(e.Data, payload(int(want))) {
			t.Fatalf("seq %d: data %q, want %q", e.Seq, e.Data, payload(int(want)))
		}
		if e.Subject != "aurum.log.batch" {
			t.Fatalf("seq %d: subject %q", e.Seq, e.Subject)
		}
		if e.Time.IsZero() {
			t.Fatalf("seq %d: zero time", e.Seq)
		}
	}
}

func appendN(t *testing.T, ctx context.Context, l *Log, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		seq, dup, err := l.Append(ctx, "aurum.log.batch", "id-"+strconv.Itoa(i), payload(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		if dup || seq != uint64(i) {
			t.Fatalf("Append %d: seq %d dup %v", i, seq, dup)
		}
	}
}

func TestAppendReadAndReopen(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	l := openLog(t, testOptions(dir))
	if n, err := l.LastSeq(ctx); err != nil || n != 0 {
		t.Fatalf("LastSeq on empty log = %d, %v", n, err)
	}
	appendN(t, ctx, l, 1, 100)
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	readN(t, ctx, r, 1, 100)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, _, err := l.Append(ctx, "aurum.log.batch", "", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}

	l2 := openLog(t, testOptions(dir))
	if n, err := l2.LastSeq(ctx); err != nil || n != 100 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 100", n, err)
	}
	// The duplicate window survives a restart.
	if seq, dup, err := l2.Append(ctx, "aurum.log.batch", "id-100", payload(100)); err != nil || !dup || seq != 100 {
		t.Fatalf("re-append of id-100 after reopen: seq %d dup %v err %v", seq, dup, err)
	}
	appendN(t, ctx, l2, 101, 150)
	r2, err := l2.NewReader(95)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	readN(t, ctx, r2, 95, 56)
}

func TestReaderWaitsAndContinues(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	r, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = r.Next(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on empty log: %v, want DeadlineExceeded", err)
	}
	// A Next blocked on an empty log returns the entry appended meanwhile.
	got := make(chan Entry, 1)
	errc := make(chan error, 1)
	go func() {
		e, err := r.Next(ctx)
		errc <- err
		got <- e
	}()
	appendN(t, ctx, l, 1, 3)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if e := <-got; e.Seq != 1 {
		t.Fatalf("first entry seq %d, want 1", e.Seq)
	}
	readN(t, ctx, r, 2, 2)

	// Close of the Log ends a blocked Next with ErrClosed.
	go func() {
		_, err := r.Next(ctx)
		errc <- err
	}()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next across Close: %v, want ErrClosed", err)
	}
}

func TestAppendAsyncManyInFlight(t *testing.T) {
	ctx := testCtx(t)
	opts := testOptions(t.TempDir())
	opts.MaxAsyncPending = 256 // force AppendAsync to block at the bound
	l := openLog(t, opts)
	const n = 3000
	futures := make([]*Future, n)
	for i := range futures {
		f, err := l.AppendAsync("aurum.log.batch", "a-"+strconv.Itoa(i+1), payload(i+1))
		if err != nil {
			t.Fatalf("AppendAsync %d: %v", i, err)
		}
		futures[i] = f
	}
	for i, f := range futures {
		seq, dup, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("Wait %d: %v", i, err)
		}
		// One goroutine: stored in call order.
		if dup || seq != uint64(i+1) {
			t.Fatalf("future %d: seq %d dup %v", i, seq, dup)
		}
	}
	// Wait is repeatable.
	if seq, _, err := futures[7].Wait(ctx); err != nil || seq != 8 {
		t.Fatalf("second Wait: %d, %v", seq, err)
	}
	// A duplicate through the async path.
	f, err := l.AppendAsync("aurum.log.batch", "a-5", payload(5))
	if err != nil {
		t.Fatal(err)
	}
	if seq, dup, err := f.Wait(ctx); err != nil || !dup || seq != 5 {
		t.Fatalf("async duplicate: seq %d dup %v err %v", seq, dup, err)
	}
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	readN(t, ctx, r, 1, n)
}

func TestDuplicates(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	tests := []struct {
		subject, id string
		wantSeq     uint64
		wantDup     bool
	}{
		{"aurum.log.batch", "m1", 1, false},
		{"aurum.log.batch", "m1", 1, true},
		{"aurum.log.batch", "m2", 2, false},
		{"aurum.log.batch", "", 3, false}, // no id: never a duplicate
		{"aurum.log.batch", "", 4, false},
		{"aurum.identity.merge", "o1", 1, false}, // AURUM_OUT has its own sequence
		{"aurum.identity.merge", "o1", 1, true},
		{"aurum.audience.entered", "o1", 1, true}, // same stream, same window
	}
	for i, tt := range tests {
		seq, dup, err := l.Append(ctx, tt.subject, tt.id, []byte("x"))
		if err != nil {
			t.Fatalf("#%d: %v", i, err)
		}
		if seq != tt.wantSeq || dup != tt.wantDup {
			t.Errorf("#%d %s %q: seq %d dup %v, want %d %v", i, tt.subject, tt.id, seq, dup, tt.wantSeq, tt.wantDup)
		}
	}
	if n, err := l.LastSeq(ctx); err != nil || n != 4 {
		t.Fatalf("LastSeq = %d, %v; want 4", n, err)
	}
}

func TestSubjectAndSizeChecks(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	for _, subj := range []string{
		"", "aurum.log", "aurum.log.", "aurum.log..x", ".aurum.log.x", "aurum.log.a b",
		"aurum.log.*", "aurum.log.>", "aurum.ingest.we*b", "other.subject", "aurum.logx.y",
	} {
		if _, _, err := l.Append(ctx, subj, "", []byte("x")); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("Append(%q): %v, want ErrInvalidSubject", subj, err)
		}
		if _, err := l.AppendAsync(subj, "", []byte("x")); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("AppendAsync(%q): %v, want ErrInvalidSubject", subj, err)
		}
	}
	big := bytes.Repeat([]byte{'a'}, MaxMessageSize)
	seq, _, err := l.Append(ctx, "aurum.log.batch", "big", big)
	if err != nil {
		t.Fatalf("Append of MaxMessageSize bytes: %v", err)
	}
	if _, _, err := l.Append(ctx, "aurum.log.batch", "", append(big, 'b')); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of MaxMessageSize+1 bytes: %v, want ErrTooLarge", err)
	}
	r, err := l.NewReader(seq)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	e, err := r.Next(ctx)
	if err != nil || !bytes.Equal(e.Data, big) {
		t.Fatalf("reading the 4 MiB entry: len %d, err %v", len(e.Data), err)
	}
}

func TestFsyncModes(t *testing.T) {
	for _, mode := range []FsyncMode{FsyncDefault, FsyncAlways} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx := testCtx(t)
			opts := testOptions(t.TempDir())
			opts.Fsync = mode
			l := openLog(t, opts)
			if got := l.srv.JetStreamConfig().SyncAlways; got != (mode == FsyncAlways) {
				t.Fatalf("server SyncAlways = %v in mode %v", got, mode)
			}
			appendN(t, ctx, l, 1, 20)
			r, err := l.NewReader(1)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			readN(t, ctx, r, 1, 20)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"embedded", Options{Dir: "x"}, true},
		{"external", Options{URL: "nats://h:4222"}, true},
		{"no dir", Options{}, false},
		{"bad listen", Options{Dir: "x", Listen: "nohost"}, false},
		{"bad port", Options{Dir: "x", Listen: "127.0.0.1:http"}, false},
		{"bad fsync", Options{Dir: "x", Fsync: 7}, false},
		{"window over age", Options{Dir: "x", OutMaxAge: time.Minute, OutDuplicateWindow: time.Hour}, false},
		{"negative", Options{Dir: "x", IngestAckWait: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.EnsureDefaults()
			if err := o.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func ingestPending(ctx context.Context, l *Log) (uint64, error) {
	s, err := l.js.Stream(ctx, StreamIngest)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Msgs, nil
}

func TestConsumeIngest(t *testing.T) {
	ctx := testCtx(t)
	opts := testOptions(t.TempDir())
	opts.IngestRetryMin = 10 * time.Millisecond
	opts.IngestRetryMax = 20 * time.Millisecond
	l := openLog(t, opts)

	// An outside producer: a plain client on the public URL.
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pjs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 25
	for i := 1; i <= n; i++ {
		subj := "aurum.ingest.web"
		if i%5 == 0 {
			subj = "aurum.ingest.pos-store_1"
		}
		if _, err := pjs.Publish(ctx, subj, payload(i)); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu       sync.Mutex
		calls    int
		failed   []uint64 // seqs of the batch the handler refused
		accepted []RawMsg
	)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- l.ConsumeIngest(cctx, 10, func(batch []RawMsg) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if len(batch) > 10 {
				return fmt.Errorf("batch of %d > max", len(batch))
			}
			if calls == 1 {
				for _, m := range batch {
					failed = append(failed, m.Seq)
				}
				return errors.New("refuse the first batch")
			}
			accepted = append(accepted, batch...)
			return nil
		})
	}()
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(accepted) < n {
			return fmt.Errorf("%d of %d accepted", len(accepted), n)
		}
		return nil
	})
	check.For(t, 5*time.Second, 5*time.Millisecond, func() error {
		p, err := ingestPending(ctx, l)
		if err == nil && p != 0 {
			err = fmt.Errorf("%d messages left in AURUM_INGEST", p)
		}
		return err
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("ConsumeIngest after cancel: %v, want nil", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(failed) == 0 {
		t.Fatal("first batch empty")
	}
	if len(accepted) != n {
		t.Fatalf("accepted %d messages, want %d (no extra redeliveries)", len(accepted), n)
	}
	for i, m := range accepted {
		want := uint64(i + 1)
		if m.Seq != want {
			t.Fatalf("accepted #%d: seq %d, want %d (stream order)", i, m.Seq, want)
		}
		if !bytes.Equal(m.Data, payload(i+1)) {
			t.Fatalf("seq %d: data %q", m.Seq, m.Data)
		}
		wantSrc := "web"
		if (i+1)%5 == 0 {
			wantSrc = "pos-store_1"
		}
		if m.Source != wantSrc {
			t.Fatalf("seq %d: source %q, want %q", m.Seq, m.Source, wantSrc)
		}
		wantDelivered := uint64(1)
		if i < len(failed) {
			wantDelivered = 2 // redelivered after the refusal
		}
		if m.Delivered != wantDelivered {
			t.Fatalf("seq %d: delivered %d times, want %d", m.Seq, m.Delivered, wantDelivered)
		}
	}

	// Published after the consumer stopped: waits in the queue for the next run.
	if _, err := pjs.Publish(ctx, "aurum.ingest.web", payload(99)); err != nil {
		t.Fatal(err)
	}
	if p, err := ingestPending(ctx, l); err != nil || p != 1 {
		t.Fatalf("pending after stop = %d, %v; want 1", p, err)
	}
	if err := l.ConsumeIngest(ctx, 0, nil); err == nil {
		t.Fatal("ConsumeIngest with max 0 accepted")
	}

	// Close ends a running ConsumeIngest with ErrClosed.
	go func() {
		done <- l.ConsumeIngest(ctx, 10, func([]RawMsg) error { return nil })
	}()
	check.For(t, 5*time.Second, 5*time.Millisecond, func() error {
		p, err := ingestPending(ctx, l)
		if err == nil && p != 0 {
			err = fmt.Errorf("%d pending", p)
		}
		return err
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("ConsumeIngest across Close: %v, want ErrClosed", err)
	}
}

func TestDeadLetters(t *testing.T) {
	ctx := testCtx(t)
	opts := testOptions(t.TempDir())
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	opts.Now = func() time.Time { return now }
	l := openLog(t, opts)
	recv := time.Date(2025, 2, 1, 8, 30, 0, 0, time.UTC)
	in := []DeadLetter{
		{Source: "web", Reason: "required for track", Field: "event", Index: 3, Payload: json.RawMessage(`{"type":"track"}`), Received: recv},
		{Source: "", Reason: "unknown source", Payload: json.RawMessage(`not json`), Received: recv},
		{Source: "BAD.src", Reason: "bad source", Index: 0}, // no Received: stamped from Options.Now
	}
	want := []DeadLetter{
		{Seq: 1, Source: "web", Reason: "required for track", Field: "event", Index: 3, Payload: json.RawMessage(`{"type":"track"}`), Received: recv},
		{Seq: 2, Source: "", Reason: "unknown source", PayloadRaw: []byte("not json"), Received: recv},
		{Seq: 3, Source: "BAD.src", Reason: "bad source", Received: now},
	}
	wantSubjects := []string{"aurum.dlq.web", "aurum.dlq._", "aurum.dlq._"}
	for _, d := range in {
		if err := l.DeadLetter(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.ReadDeadLetters(ctx, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d dead letters, want %d", len(got), len(want))
	}
	s, err := l.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Source != w.Source || g.Reason != w.Reason || g.Field != w.Field ||
			g.Index != w.Index || !bytes.Equal(g.Payload, w.Payload) || !bytes.Equal(g.PayloadRaw, w.PayloadRaw) ||
			!g.Received.Equal(w.Received) || g.Truncated {
			t.Errorf("dead letter %d:\n got %+v\nwant %+v", i, g, w)
		}
		m, err := s.GetMsg(ctx, g.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != wantSubjects[i] {
			t.Errorf("dead letter %d on %q, want %q", i, m.Subject, wantSubjects[i])
		}
	}
	// Paging.
	page, err := l.ReadDeadLetters(ctx, 2, 1)
	if err != nil || len(page) != 1 || page[0].Seq != 2 {
		t.Fatalf("page from 2: %+v, %v", page, err)
	}
	if page, err := l.ReadDeadLetters(ctx, 4, 10); err != nil || len(page) != 0 {
		t.Fatalf("page past the end: %+v, %v", page, err)
	}
	// An oversized input is truncated, not lost.
	huge := bytes.Repeat([]byte{'z'}, MaxMessageSize)
	if err := l.DeadLetter(ctx, DeadLetter{Source: "web", Reason: "too large", Payload: huge}); err != nil {
		t.Fatal(err)
	}
	page, err = l.ReadDeadLetters(ctx, 4, 10)
	if err != nil || len(page) != 1 {
		t.Fatalf("oversized: %+v, %v", page, err)
	}
	if d := page[0]; !d.Truncated || len(d.PayloadRaw) != maxDeadLetterPayload || d.Payload != nil {
		t.Fatalf("oversized dead letter: truncated %v raw %d payload %d", d.Truncated, len(d.PayloadRaw), len(d.Payload))
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	ctx := testCtx(t)
	exercise := func() {
		l, err := Open(ctx, testOptions(t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, ctx, l, 1, 10)
		f, err := l.AppendAsync("aurum.log.batch", "x", []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		r, err := l.NewReader(1)
		if err != nil {
			t.Fatal(err)
		}
		readN(t, ctx, r, 1, 10) // left open: Close must stop it
		if err := l.DeadLetter(ctx, DeadLetter{Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- l.ConsumeIngest(cctx, 5, func([]RawMsg) error { return nil }) }()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	exercise() // warm up process-wide pools of nats-server and the runtime
	before := runtime.NumGoroutine()
	exercise()
	check.For(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines after Close, %d before Open", n, before)
		}
		return nil
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A Reader on a Log connected by URL keeps its place when the server
// restarts underneath it: no entry skipped or repeated.
func TestReaderAcrossServerRestart(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	srvOpts := Options{Dir: dir, Listen: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	srv := openLog(t, srvOpts)
	appendN(t, ctx, srv, 1, 10)

	client := openLog(t, Options{URL: srv.ClientURL()})
	r, err := client.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	readN(t, ctx, r, 1, 5)

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv2 := openLog(t, srvOpts)
	appendN(t, ctx, srv2, 11, 20)
	readN(t, ctx, r, 6, 15)
}

func benchLog(b *testing.B) *Log {
	return openLog(b, testOptions(b.TempDir()))
}

func BenchmarkAppendSync(b *testing.B) {
	l := benchLog(b)
	ctx := context.Background()
	data := bytes.Repeat([]byte{'x'}, 256)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := l.Append(ctx, "aurum.log.batch", strconv.Itoa(i), data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendAsync(b *testing.B) {
	l := benchLog(b)
	ctx := context.Background()
	data := bytes.Repeat([]byte{'x'}, 256)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	futures := make([]*Future, 0, 1024)
	for i := 0; i < b.N; i++ {
		f, err := l.AppendAsync("aurum.log.batch", strconv.Itoa(i), data)
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == cap(futures) || i == b.N-1 {
			for _, f := range futures {
				if _, _, err := f.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			futures = futures[:0]
		}
	}
}

func BenchmarkReader(b *testing.B) {
	l := benchLog(b)
	ctx := context.Background()
	data := bytes.Repeat([]byte{'x'}, 256)
	futures := make([]*Future, 0, b.N)
	for i := 0; i < b.N; i++ {
		f, err := l.AppendAsync("aurum.log.batch", "", data)
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		if _, _, err := f.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	r, err := l.NewReader(1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for i := 0; i < b.N; i++ {
		e, err := r.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if e.Seq != uint64(i+1) {
			b.Fatalf("seq %d, want %d", e.Seq, i+1)
		}
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLogsListenAddressAndFsyncWarning(t *testing.T) {
	var out syncBuffer
	logger := slog.New(slog.NewTextHandler(&out, nil))
	opts := testOptions(t.TempDir())
	opts.Logger = logger
	srv := openLog(t, opts)
	if !strings.Contains(out.String(), "listening") || !strings.Contains(out.String(), srv.ClientURL()) {
		t.Fatalf("no Info line with the listen URL %s in:\n%s", srv.ClientURL(), out.String())
	}
	client := openLog(t, Options{URL: srv.ClientURL(), Fsync: FsyncAlways, Logger: logger})
	if client.ClientURL() != srv.ClientURL() {
		t.Fatalf("external ClientURL %q, want %q", client.ClientURL(), srv.ClientURL())
	}
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "fsync=always") {
		t.Fatalf("no fsync warning for an external URL in:\n%s", out.String())
	}
}

// TestReaderPending checks Entry.Pending: the entries the stream held after
// each one when it was delivered (the apply loop's hint to group entries).
func TestReaderPending(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	appendN(t, ctx, l, 1, 10)
	r, err := l.NewReader(4)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for seq := uint64(4); seq <= 10; seq++ {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != seq || e.Pending != 10-seq {
			t.Fatalf("entry %d: pending %d, want seq %d pending %d", e.Seq, e.Pending, seq, 10-seq)
		}
	}
}

// TestConsumeIngestPipelined: batches are started in stream order while
// earlier ones still wait; nothing is acked before its wait succeeded; a
// failed wait naks its batch and every later one in flight, and all are
// redelivered and handled.
func TestConsumeIngestPipelined(t *testing.T) {
	ctx := testCtx(t)
	opts := testOptions(t.TempDir())
	opts.IngestRetryMin = 10 * time.Millisecond
	opts.IngestRetryMax = 20 * time.Millisecond
	l := openLog(t, opts)
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pjs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := 1; i <= n; i++ {
		if _, err := pjs.Publish(ctx, "aurum.ingest.web", payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu       sync.Mutex
		started  [][]uint64 // seqs of each started batch, in start order
		done     = map[uint64]bool{}
		failOnce = true
	)
	release := make(chan struct{})
	cctx, stop := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		res <- l.ConsumeIngestPipelined(cctx, 5, 3, func(batch []RawMsg) func() error {
			seqs := make([]uint64, len(batch))
			for i, m := range batch {
				seqs[i] = m.Seq
			}
			mu.Lock()
			started = append(started, seqs)
			first := len(started) == 1
			fail := failOnce && seqs[0] > 5 && seqs[0] <= 10
			if fail {
				failOnce = false
			}
			mu.Unlock()
			return func() error {
				if first {
					<-release // the first batch waits until the test saw the pipeline
				}
				if fail {
					return errors.New("append failed")
				}
				mu.Lock()
				for _, s := range seqs {
					done[s] = true
				}
				mu.Unlock()
				return nil
			}
		})
	}()
	// While the first batch waits, later ones start, and nothing is acked.
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(started) < 3 {
			return fmt.Errorf("%d batches started while the first waits", len(started))
		}
		return nil
	})
	if p, err := ingestPending(ctx, l); err != nil || p != n {
		t.Fatalf("AURUM_INGEST holds %d of %d (%v) while the first batch waits", p, n, err)
	}
	close(release)
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(done) < n {
			return fmt.Errorf("%d of %d handled", len(done), n)
		}
		return nil
	})
	check.For(t, 5*time.Second, 5*time.Millisecond, func() error {
		p, err := ingestPending(ctx, l)
		if err == nil && p != 0 {
			err = fmt.Errorf("%d messages left in AURUM_INGEST", p)
		}
		return err
	})
	stop()
	if err := <-res; err != nil {
		t.Fatalf("ConsumeIngestPipelined after cancel: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// First deliveries are in stream order; the failed batch and the ones
	// after it came again.
	var seen uint64
	redelivered := 0
	for _, b := range started {
		if b[0] <= seen {
			redelivered++
			continue
		}
		for _, s := range b {
			if s <= seen {
				t.Fatalf("first delivery out of order: %v after %d", b, seen)
			}
			seen = s
		}
	}
	if failOnce || redelivered == 0 {
		t.Fatalf("the failure was not exercised (redelivered batches: %d)", redelivered)
	}
	if err := l.ConsumeIngestPipelined(ctx, 5, 0, nil); err == nil {
		t.Fatal("depth 0 accepted")
	}
}
