package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	alog "github.com/aurumcdp/aurum/log"
)

// TestFetcher checks the fetch stage of the replay pipeline on a real log:
// entries come in log order, no more than its byte bound is held ahead of a
// consumer that does not take them, stop ends its goroutine wherever it
// is (blocked on the bound, or on a log with nothing more), and a closed
// log ends it with ErrClosed.
func TestFetcher(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := alog.Open(ctx, alog.Options{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n, size = 40, 4 << 10
	for i := range n {
		data := make([]byte, size)
		data[0] = byte(i)
		if _, _, err := l.Append(ctx, "aurum.log.test", fmt.Sprintf("m%d", i), data); err != nil {
			t.Fatal(err)
		}
	}

	// Bounded: nothing taken, at most the bound (and one entry) held.
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	const bound = 5 * size
	f := startFetcher(ctx, r, nil, bound)
	check.For(t, 60*time.Second, 5*time.Millisecond, func() error {
		if got := f.held.Load(); got < bound {
			return fmt.Errorf("holds %d bytes, want it to fill up to %d", got, bound)
		}
		return nil
	})
	if got := f.held.Load(); got > bound+size {
		t.Fatalf("holds %d bytes ahead, bound %d (+ one entry of %d)", got, bound, size)
	}
	// Taken in order, each once; the stage refills as the consumer takes.
	for i := range n {
		fe, err := f.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fe.Seq != uint64(i+1) || fe.Data[0] != byte(i) {
			t.Fatalf("entry %d: seq %d, data[0] %d", i, fe.Seq, fe.Data[0])
		}
		if got := f.held.Load(); got > bound+size {
			t.Fatalf("holds %d bytes ahead, bound %d (+ one entry of %d)", got, bound, size)
		}
	}
	// At the head of the log the stage waits in Next: stop ends it.
	stopped(t, f)
	if _, err := f.next(ctx); err == nil {
		t.Fatal("next after stop: no error")
	}
	r.Close()

	// Stopped while blocked on the bound.
	r, err = l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	f = startFetcher(ctx, r, nil, size)
	check.For(t, 60*time.Second, 5*time.Millisecond, func() error {
		if f.held.Load() < size {
			return errors.New("not filled yet")
		}
		return nil
	})
	stopped(t, f)
	r.Close()

	// The log closed under it: ErrClosed once the entries held are taken.
	r, err = l.NewReader(n - 1)
	if err != nil {
		t.Fatal(err)
	}
	f = startFetcher(ctx, r, nil, 0)
	defer f.stop()
	for range 2 {
		if _, err := f.next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if _, err := f.next(ctx); !errors.Is(err, alog.ErrClosed) {
		t.Fatalf("next after the log closed: %v, want ErrClosed", err)
	}
}

// stopped stops f and checks that its goroutine ended.
func stopped(t *testing.T, f *fetcher) {
	t.Helper()
	f.stop()
	select {
	case <-f.done:
	default:
		t.Fatal("stop returned before the fetch goroutine ended")
	}
	f.stop() // idempotent
}
