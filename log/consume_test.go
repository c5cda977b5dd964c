package log

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
)

// call is one handler invocation seen by a test consumer.
type call struct {
	seq       uint64
	msgID     string
	subject   string
	data      string
	delivered uint64
	pending   uint64
}

// recorder records handler calls; fail decides each call's result.
type recorder struct {
	mu    sync.Mutex
	calls []call
	fail  func(Msg) error
}

func (r *recorder) handle(m Msg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{m.Seq, m.MsgID, m.Subject, string(m.Data), m.Delivered, m.Pending})
	if r.fail != nil {
		return r.fail(m)
	}
	return nil
}

func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// waitCalls polls until the recorder holds at least n calls.
func (r *recorder) waitCalls(t *testing.T, n int) []call {
	t.Helper()
	check.For(t, 10*time.Second, 2*time.Millisecond, func() error {
		if got := len(r.snapshot()); got < n {
			return fmt.Errorf("%d of %d handler calls", got, n)
		}
		return nil
	})
	return r.snapshot()
}

// runConsumer starts ConsumeDurable in a goroutine; stop cancels it and
// returns its result.
func runConsumer(t *testing.T, l *Log, durable string, filters []string, opts ConsumeOptions, handle func(Msg) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.ConsumeDurable(ctx, StreamOut, durable, filters, opts, handle) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("ConsumeDurable did not return")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func appendOut(t *testing.T, ctx context.Context, l *Log, subject, id string) uint64 {
	t.Helper()
	seq, _, err := l.Append(ctx, subject, id, []byte(`{"id":"`+id+`"}`))
	if err != nil {
		t.Fatalf("Append %s: %v", subject, err)
	}
	return seq
}

func fastConsume() ConsumeOptions {
	return ConsumeOptions{BackoffMin: time.Millisecond, BackoffMax: 4 * time.Millisecond}
}

func TestConsumeDurableOrderRetryAndFilters(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	// Audience a on seqs 1,3,5,7,9; audience b and merges in between.
	var want []uint64
	for i := 1; i <= 10; i++ {
		subj := "aurum.audience.a.entered"
		switch {
		case i%2 == 0 && i%4 == 0:
			subj = "aurum.identity.merged"
		case i%2 == 0:
			subj = "aurum.audience.b.entered"
		case i == 7:
			subj = "aurum.audience.a.exited"
		}
		seq := appendOut(t, ctx, l, subj, "m"+strconv.Itoa(i))
		if subj[:16] == "aurum.audience.a" {
			want = append(want, seq)
		}
	}
	rec := &recorder{fail: func(m Msg) error {
		switch {
		case m.Seq == 3 && m.Delivered < 3: // fails twice, then succeeds
			return &RetryAfter{Delay: time.Millisecond, Err: errors.New("busy")}
		case m.Seq == 5 && m.Delivered == 1:
			return errors.New("plain failure: backoff")
		}
		return nil
	}}
	stop := runConsumer(t, l, "test-a", []string{"aurum.audience.a.>"}, fastConsume(), rec.handle)
	rec.waitCalls(t, len(want)+3)
	// Appended while running: delivered too.
	want = append(want, appendOut(t, ctx, l, "aurum.audience.a.entered", "m11"))
	rec.waitCalls(t, len(want)+3)
	if err := stop(); err != nil {
		t.Fatalf("ConsumeDurable after cancel: %v, want nil", err)
	}
	calls := rec.snapshot()

	type attempt struct{ seq, delivered uint64 }
	wantCalls := []attempt{{1, 1}, {3, 1}, {3, 2}, {3, 3}, {5, 1}, {5, 2}, {7, 1}, {9, 1}, {11, 1}}
	if len(calls) != len(wantCalls) {
		t.Fatalf("calls %+v, want %v", calls, wantCalls)
	}
	for i, c := range calls {
		if c.seq != wantCalls[i].seq || c.delivered != wantCalls[i].delivered {
			t.Fatalf("call #%d: seq %d attempt %d, want %+v (all: %+v)", i, c.seq, c.delivered, wantCalls[i], calls)
		}
		id := "m" + strconv.FormatUint(c.seq, 10)
		if c.msgID != id || c.data != `{"id":"`+id+`"}` {
			t.Fatalf("seq %d: msg id %q data %q", c.seq, c.msgID, c.data)
		}
	}
	if calls[0].pending != 4 {
		t.Fatalf("pending after the first message = %d, want 4", calls[0].pending)
	}
	if calls[6].subject != "aurum.audience.a.exited" {
		t.Fatalf("seq 7 subject %q", calls[6].subject)
	}
}

func TestConsumeDurableGiveUp(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	for i := 1; i <= 4; i++ {
		appendOut(t, ctx, l, "aurum.audience.x.entered", "m"+strconv.Itoa(i))
	}
	var (
		mu      sync.Mutex
		gaveUp  []string
		dlFails = 1 // the give-up handler fails once for seq 4
	)
	opts := fastConsume()
	opts.MaxDeliver = 3
	opts.OnGiveUp = func(m Msg, err error) error {
		mu.Lock()
		defer mu.Unlock()
		gaveUp = append(gaveUp, fmt.Sprintf("%d@%d:%v", m.Seq, m.Delivered, err))
		if m.Seq == 4 && dlFails > 0 {
			dlFails--
			return errors.New("dead-letter store down")
		}
		return nil
	}
	rec := &recorder{fail: func(m Msg) error {
		switch m.Seq {
		case 2:
			return errors.New("always 500")
		case 3:
			return fmt.Errorf("status 400: %w", ErrPermanent)
		case 4:
			return fmt.Errorf("status 410: %w", ErrPermanent)
		}
		return nil
	}}
	stop := runConsumer(t, l, "giveup", []string{"aurum.audience.x.>"}, opts, rec.handle)
	// 1; 2 three times; 3 once; 4 twice (its give-up failed once).
	rec.waitCalls(t, 7)
	check.For(t, 5*time.Second, 2*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(gaveUp) < 4 {
			return fmt.Errorf("gave up %v", gaveUp)
		}
		return nil
	})
	appendOut(t, ctx, l, "aurum.audience.x.entered", "m5")
	rec.waitCalls(t, 8)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range rec.snapshot() {
		got = append(got, fmt.Sprintf("%d@%d", c.seq, c.delivered))
	}
	wantCalls := "[1@1 2@1 2@2 2@3 3@1 4@1 4@2 5@1]"
	if fmt.Sprint(got) != wantCalls {
		t.Fatalf("calls %v, want %s", got, wantCalls)
	}
	mu.Lock()
	defer mu.Unlock()
	wantGiveUp := "[2@3:always 500 3@1:status 400: log: permanent failure 4@1:status 410: log: permanent failure 4@2:status 410: log: permanent failure]"
	if fmt.Sprint(gaveUp) != wantGiveUp {
		t.Fatalf("gave up %v\nwant     %s", gaveUp, wantGiveUp)
	}
}

func TestConsumeDurablePositionAndDelete(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	for i := 1; i <= 3; i++ {
		appendOut(t, ctx, l, "aurum.audience.p.entered", "m"+strconv.Itoa(i))
	}
	seqs := func(r *recorder) string {
		var s []uint64
		for _, c := range r.snapshot() {
			s = append(s, c.seq)
		}
		return fmt.Sprint(s)
	}
	filters := []string{"aurum.audience.p.>", "aurum.audience.q.>"}

	r1 := &recorder{}
	stop := runConsumer(t, l, "pos", filters, fastConsume(), r1.handle)
	r1.waitCalls(t, 3)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	appendOut(t, ctx, l, "aurum.audience.q.exited", "m4")
	appendOut(t, ctx, l, "aurum.audience.p.exited", "m5")

	// The durable continues where it stopped.
	r2 := &recorder{}
	stop = runConsumer(t, l, "pos", filters, fastConsume(), r2.handle)
	r2.waitCalls(t, 2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := seqs(r1) + seqs(r2); got != "[1 2 3][4 5]" {
		t.Fatalf("first and second run: %s", got)
	}

	// Narrowing the filters updates the consumer.
	appendOut(t, ctx, l, "aurum.audience.q.entered", "m6")
	appendOut(t, ctx, l, "aurum.audience.p.entered", "m7")
	r3 := &recorder{}
	stop = runConsumer(t, l, "pos", filters[:1], fastConsume(), r3.handle)
	r3.waitCalls(t, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := seqs(r3); got != "[7]" {
		t.Fatalf("after narrowing to p: %s, want [7]", got)
	}

	// Deleted: a new consumer starts from the beginning.
	if err := l.DeleteConsumer(ctx, StreamOut, "pos"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteConsumer(ctx, StreamOut, "pos"); err != nil {
		t.Fatalf("second DeleteConsumer: %v, want nil", err)
	}
	r4 := &recorder{}
	stop = runConsumer(t, l, "pos", filters[:1], fastConsume(), r4.handle)
	r4.waitCalls(t, 5)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := seqs(r4); got != "[1 2 3 5 7]" {
		t.Fatalf("after delete: %s", got)
	}
}

func TestConsumeDurableArgsAndClose(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	ok := func(Msg) error { return nil }
	for _, tc := range []struct {
		name, stream, durable string
		filters               []string
		opts                  ConsumeOptions
		handle                func(Msg) error
	}{
		{"no filters", StreamOut, "d", nil, ConsumeOptions{}, ok},
		{"empty filter", StreamOut, "d", []string{""}, ConsumeOptions{}, ok},
		{"overlapping filters", StreamOut, "d", []string{"aurum.audience.a.>", "aurum.audience.*.entered"}, ConsumeOptions{}, ok},
		{"bad durable", StreamOut, "a.b", []string{"aurum.audience.>"}, ConsumeOptions{}, ok},
		{"empty durable", StreamOut, "", []string{"aurum.audience.>"}, ConsumeOptions{}, ok},
		{"bad stream", "A B", "d", []string{"aurum.audience.>"}, ConsumeOptions{}, ok},
		{"unknown stream", "NOPE", "d", []string{"aurum.audience.>"}, ConsumeOptions{}, ok},
		{"filter outside stream", StreamOut, "d", []string{"aurum.log.>"}, ConsumeOptions{}, ok},
		{"backoff min > max", StreamOut, "d", []string{"aurum.audience.>"}, ConsumeOptions{BackoffMin: time.Second, BackoffMax: time.Millisecond}, ok},
		{"negative max deliver", StreamOut, "d", []string{"aurum.audience.>"}, ConsumeOptions{MaxDeliver: -1}, ok},
		{"nil handler", StreamOut, "d", []string{"aurum.audience.>"}, ConsumeOptions{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := l.ConsumeDurable(ctx, tc.stream, tc.durable, tc.filters, tc.opts, tc.handle); err == nil {
				t.Fatal("accepted")
			}
		})
	}

	// Close ends a running ConsumeDurable with ErrClosed.
	done := make(chan error, 1)
	go func() {
		done <- l.ConsumeDurable(ctx, StreamOut, "closing", []string{"aurum.audience.>"}, ConsumeOptions{}, ok)
	}()
	check.For(t, 5*time.Second, 2*time.Millisecond, func() error {
		s, err := l.js.Stream(ctx, StreamOut)
		if err != nil {
			return err
		}
		_, err = s.Consumer(ctx, "closing")
		return err
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("ConsumeDurable across Close: %v, want ErrClosed", err)
	}
	if err := l.ConsumeDurable(ctx, StreamOut, "d", []string{"aurum.audience.>"}, ConsumeOptions{}, ok); !errors.Is(err, ErrClosed) {
		t.Fatalf("ConsumeDurable after Close: %v", err)
	}
	if err := l.DeleteConsumer(ctx, StreamOut, "d"); !errors.Is(err, ErrClosed) {
		t.Fatalf("DeleteConsumer after Close: %v", err)
	}
}

func TestConsumeBackoff(t *testing.T) {
	o := ConsumeOptions{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}
	for _, tc := range []struct {
		attempt uint64
		want    time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{1000, time.Second},
	} {
		if got := o.Backoff(tc.attempt); got != tc.want {
			t.Errorf("Backoff(%d) = %v, want %v", tc.attempt, got, tc.want)
		}
	}
	var d ConsumeOptions
	d.EnsureDefaults()
	if d.MaxDeliver != DefaultConsumeMaxDeliver || d.BackoffMin != DefaultConsumeBackoffMin ||
		d.BackoffMax != DefaultConsumeBackoffMax || d.AckWait != DefaultConsumeAckWait {
		t.Fatalf("defaults: %+v", d)
	}
}

func TestSubjectSubset(t *testing.T) {
	for _, tc := range []struct {
		f, p string
		want bool
	}{
		{"aurum.audience.a.>", "aurum.audience.>", true},
		{"aurum.audience.a.entered", "aurum.audience.>", true},
		{"aurum.audience.>", "aurum.audience.>", true},
		{"aurum.audience", "aurum.audience.>", false},
		{"aurum.>", "aurum.audience.>", false},
		{"aurum.*.a", "aurum.audience.>", false},
		{"aurum.log.x", "aurum.audience.>", false},
		{"aurum.x.y", "aurum.*.y", true},
		{"aurum.*.y", "aurum.*.y", true},
		{"aurum.>", "aurum.*.y", false},
		{"aurum.x.y.z", "aurum.*.y", false},
		{"aurum.x", "aurum.*.y", false},
		{"a.b", "a.b", true},
		{"a.c", "a.b", false},
	} {
		if got := subjectSubset(tc.f, tc.p); got != tc.want {
			t.Errorf("subjectSubset(%q, %q) = %v, want %v", tc.f, tc.p, got, tc.want)
		}
	}
}

// A consumer stuck retrying its first message does not delay another
// consumer of the same subjects. Repeated because the stall this guards
// against (a pull request not renewed after a fast reply) was a race.
func TestConsumeDurableIndependentConsumers(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	for round := range 10 {
		var ok atomic.Int64
		failOpts := ConsumeOptions{MaxDeliver: 1 << 30, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}
		prefix := "r" + strconv.Itoa(round)
		stopFail := runConsumer(t, l, prefix+"-fail", []string{"aurum.audience." + prefix + ".>"}, failOpts, func(Msg) error { return errors.New("down") })
		stopOK := runConsumer(t, l, prefix+"-ok", []string{"aurum.audience." + prefix + ".>"}, ConsumeOptions{}, func(Msg) error { ok.Add(1); return nil })
		for i := 1; i <= 10; i++ {
			appendOut(t, ctx, l, "aurum.audience."+prefix+".entered", prefix+"-m"+strconv.Itoa(i))
		}
		// Well under the 30 s a stalled pull request would take.
		check.For(t, 3*time.Second, time.Millisecond, func() error {
			if n := ok.Load(); n != 10 {
				return fmt.Errorf("round %d: healthy consumer got %d of 10", round, n)
			}
			return nil
		})
		if err := errors.Join(stopFail(), stopOK()); err != nil {
			t.Fatal(err)
		}
	}
}

// A stopped ConsumeDurable leaves no pull request pending on the server: a
// message appended the moment it returned goes to the next run at once,
// not after AckWait (here a minute) on a dead inbox.
func TestConsumeDurableStopLeavesNoPendingPull(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	opts := fastConsume()
	opts.AckWait = time.Minute
	var seen []uint64
	for round := 1; round <= 25; round++ {
		r := &recorder{}
		stop := runConsumer(t, l, "restart", []string{"aurum.audience.r.>"}, opts, r.handle)
		if round > 1 {
			calls := r.waitCalls(t, 1)
			seen = append(seen, calls[0].seq)
		}
		// Stop the run while its next pull request is pending.
		check.For(t, 5*time.Second, time.Millisecond, func() error {
			cons, err := l.js.Consumer(ctx, StreamOut, "restart")
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumWaiting == 0 {
				return errors.New("no pull request pending")
			}
			return nil
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		appendOut(t, ctx, l, "aurum.audience.r.entered", "r"+strconv.Itoa(round))
	}
	if len(seen) != 24 || seen[0] != 1 || seen[23] != 24 {
		t.Fatalf("rounds saw %v, want 1..24", seen)
	}
}

// TestConsumeDurableBatch: messages ready together come in one batch (up
// to Batch), in stream order; a failed batch comes back whole and nothing
// after it passes it; an acked batch is never handed again.
func TestConsumeDurableBatch(t *testing.T) {
	ctx := testCtx(t)
	l := openLog(t, testOptions(t.TempDir()))
	var want []uint64
	for i := 1; i <= 20; i++ {
		want = append(want, appendOut(t, ctx, l, "aurum.audience.a.entered", "b"+strconv.Itoa(i)))
	}
	var mu sync.Mutex
	var batches [][]uint64
	var acked []uint64
	failed := false
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	opts := fastConsume()
	opts.Batch = 8
	go func() {
		done <- l.ConsumeDurableBatch(cctx, StreamOut, "test-batch", []string{"aurum.audience.a.>"}, opts, func(ms []Msg) error {
			mu.Lock()
			defer mu.Unlock()
			var seqs []uint64
			for _, m := range ms {
				seqs = append(seqs, m.Seq)
			}
			batches = append(batches, seqs)
			if !failed && slices.Contains(seqs, want[9]) {
				failed = true
				return &RetryAfter{Delay: time.Millisecond, Err: errors.New("busy")}
			}
			acked = append(acked, seqs...)
			return nil
		})
	}()
	check.For(t, 30*time.Second, 5*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < len(want) {
			return fmt.Errorf("%d of %d acked", len(acked), len(want))
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(acked, want) {
		t.Fatalf("acked %v, want %v (batches %v)", acked, want, batches)
	}
	most := 0
	for _, b := range batches {
		if len(b) > 8 {
			t.Fatalf("batch of %d > 8: %v", len(b), b)
		}
		most = max(most, len(b))
	}
	if most < 2 {
		t.Fatalf("no batch of more than one message: %v", batches)
	}
	t.Logf("batches: %v", batches)
}
