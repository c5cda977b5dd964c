package log

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/internal/check"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// producer is an outside producer's JetStream client on l's public URL.
func producer(t *testing.T, l *Log) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(l.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func publishRange(t *testing.T, ctx context.Context, js jetstream.JetStream, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := js.Publish(ctx, "aurum.ingest.web", payload(i)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

func ingestInfo(t *testing.T, ctx context.Context, l *Log) *jetstream.StreamInfo {
	t.Helper()
	s, err := l.js.Stream(ctx, StreamIngest)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo()
}

// consumeUntil runs ConsumeIngest (batches of max) until done says so
// about the messages handled so far, and returns them.
func consumeUntil(t *testing.T, ctx context.Context, l *Log, max int, handle func(RawMsg), done func([]RawMsg) bool) []RawMsg {
	t.Helper()
	var (
		mu  sync.Mutex
		got []RawMsg
	)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	res := make(chan error, 1)
	go func() { // owned here: stop, then <-res
		res <- l.ConsumeIngest(cctx, max, func(batch []RawMsg) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				if handle != nil {
					handle(m)
				}
				got = append(got, m)
			}
			if done(got) {
				stop()
			}
			return nil
		})
	}()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("ConsumeIngest: %v", err)
		}
	case <-ctx.Done():
		stop()
		<-res
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("ConsumeIngest: %d messages handled when the test's time ran out", len(got))
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}

func seqsOf(ms []RawMsg) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// TestConsumeIngestResumesAfterCrash: the purges are the gateway's
// position. A batch handled (its events durable) whose purge never
// happened (a crash between the two) is read again after a restart, and
// only it: what was purged never comes back, nothing after it is skipped,
// and the messages keep their names (stream and sequence), from which the
// gateway derives the message ids it deduplicates by.
func TestConsumeIngestResumesAfterCrash(t *testing.T) {
	ctx := testCtx(t)
	opts := testOptions(t.TempDir())
	l := openLog(t, opts)
	if info := ingestInfo(t, ctx, l); info.Config.Retention != jetstream.LimitsPolicy {
		t.Fatalf("AURUM_INGEST retention %v, want limits", info.Config.Retention)
	}
	publishRange(t, ctx, producer(t, l), 1, 30)

	// Batches of 10: the first is purged; the second is handled, then the
	// process "dies" before its purge.
	l.beforeIngestPurge = func(last uint64) error {
		if last >= 20 {
			return errors.New("crash before the purge")
		}
		return nil
	}
	first := consumeUntil(t, ctx, l, 10, nil, func(got []RawMsg) bool { return len(got) >= 20 })
	if !slices.Equal(seqsOf(first), seqRange(1, 20)) {
		t.Fatalf("first run handled %v, want 1..20", seqsOf(first))
	}
	if info := ingestInfo(t, ctx, l); info.State.FirstSeq != 11 || info.State.Msgs != 20 {
		t.Fatalf("after the crash the stream holds %d messages from %d; want 20 from 11 (the handled batch not purged)",
			info.State.Msgs, info.State.FirstSeq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := openLog(t, opts)
	second := consumeUntil(t, ctx, l2, 10, nil, func(got []RawMsg) bool { return len(got) > 0 && got[len(got)-1].Seq >= 30 })
	if !slices.Equal(seqsOf(second), seqRange(11, 30)) {
		t.Fatalf("after the restart: handled %v, want 11..30 (the unpurged batch again, then the rest)", seqsOf(second))
	}
	for i, m := range second {
		if m.Stream == 0 || m.Stream != first[0].Stream {
			t.Fatalf("seq %d: stream %d, want %d as before the restart (the message's name)", m.Seq, m.Stream, first[0].Stream)
		}
		if string(m.Data) != string(payload(int(m.Seq))) || m.Source != "web" || m.Delivered != 1 {
			t.Fatalf("#%d: %+v", i, m)
		}
	}
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error {
		if info := ingestInfo(t, ctx, l2); info.State.Msgs != 0 || info.State.FirstSeq != 31 {
			return fmt.Errorf("stream holds %d messages from %d; want none, first 31", info.State.Msgs, info.State.FirstSeq)
		}
		return nil
	})
}

// TestIngestUpgradeFromWorkQueue: an AURUM_INGEST of an earlier build (a
// work queue, some messages acked, some delivered and never acked when it
// stopped) is drained by the first ConsumeIngest: sealed (publishes
// refused meanwhile), every message left handled once and in order, then
// re-created as a limits stream whose sequences continue; new messages
// follow, with the new stream's name.
func TestIngestUpgradeFromWorkQueue(t *testing.T) {
	ctx := testCtx(t)
	opts := testOptions(t.TempDir())
	opts.IngestRetryMin, opts.IngestRetryMax = 10*time.Millisecond, 50*time.Millisecond
	l := openLog(t, opts)

	// What the earlier build made: the work queue, and its gateway's
	// durable consumer with explicit acks.
	if err := l.js.DeleteStream(ctx, StreamIngest); err != nil {
		t.Fatal(err)
	}
	old := l.ingestConfig()
	old.Retention, old.Description = jetstream.WorkQueuePolicy, "Aurum raw ingest work queue"
	if _, err := l.js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	pjs := producer(t, l)
	publishRange(t, ctx, pjs, 1, 25)
	cons, err := l.js.CreateOrUpdateConsumer(ctx, StreamIngest, jetstream.ConsumerConfig{
		Durable: GatewayConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(n int) []jetstream.Msg {
		b, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var out []jetstream.Msg
		for m := range b.Messages() {
			out = append(out, m)
		}
		if len(out) != n {
			t.Fatalf("fetched %d of %d", len(out), n)
		}
		return out
	}
	for _, m := range fetch(5) { // handled and acked: gone
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fetch(3) // 6..8 delivered, never acked: the earlier gateway stopped
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := openLog(t, opts) // leaves the work queue for the gateway
	if !l2.ingestLegacy.Load() {
		t.Fatal("Open did not notice the work queue")
	}
	pjs = producer(t, l2)
	publishRange(t, ctx, pjs, 26, 26) // still accepted: not sealed yet
	var refused error
	// Once the stream is a limits stream again, the producer publishes
	// three more.
	published := make(chan struct{})
	go func() { // owned by the test: <-published below
		defer close(published)
		err := check.Poll(20*time.Second, 5*time.Millisecond, func() error {
			s, err := l2.js.Stream(ctx, StreamIngest)
			if err != nil || s.CachedInfo().Config.Retention != jetstream.LimitsPolicy {
				return fmt.Errorf("not a limits stream yet (%v)", err)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
			return
		}
		for i := 27; i <= 29; i++ {
			if _, err := pjs.Publish(ctx, "aurum.ingest.web", payload(i)); err != nil {
				t.Errorf("publish %d after the upgrade: %v", i, err)
				return
			}
		}
	}()
	got := consumeUntil(t, ctx, l2, 10, func(m RawMsg) {
		if refused == nil && m.Stream == 0 {
			// Sealed while it is drained: a producer's publish is refused.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := pjs.Publish(pctx, "aurum.ingest.web", payload(99)); err == nil {
				t.Error("a publish was accepted while the work queue was being drained")
			} else {
				refused = err
			}
		}
	}, func(got []RawMsg) bool { return len(got) > 0 && got[len(got)-1].Seq >= 29 })
	<-published
	if refused == nil {
		t.Fatal("no publish tried during the drain")
	}
	t.Logf("publish during the drain: %v", refused)
	if !slices.Equal(seqsOf(got), append(seqRange(6, 26), 27, 28, 29)) {
		t.Fatalf("handled %v, want 6..26 (the acked ones gone, the un-acked ones at once), then 27..29", seqsOf(got))
	}
	info := ingestInfo(t, ctx, l2)
	if info.Config.Retention != jetstream.LimitsPolicy || info.Config.Sealed || l2.ingestLegacy.Load() {
		t.Fatalf("after the drain: retention %v sealed %v legacy %v; want a limits stream", info.Config.Retention, info.Config.Sealed, l2.ingestLegacy.Load())
	}
	if info.Config.FirstSeq != 27 {
		t.Fatalf("the new stream's first sequence is %d, want 27 (after the work queue's last)", info.Config.FirstSeq)
	}
	for _, m := range got {
		wantStream := int64(0) // the work queue's
		if m.Seq > 26 {
			wantStream = info.Created.UnixNano()
		}
		if m.Stream != wantStream || string(m.Data) != string(payload(int(m.Seq))) {
			t.Fatalf("%+v: want stream %d and the message as published", m, wantStream)
		}
	}

	// The next Open finds the limits stream as it is: no upgrade, same
	// first sequence.
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	l3 := openLog(t, opts)
	if l3.ingestLegacy.Load() {
		t.Fatal("a limits AURUM_INGEST taken for a work queue")
	}
	check.For(t, 10*time.Second, 5*time.Millisecond, func() error {
		if info := ingestInfo(t, ctx, l3); info.Config.FirstSeq != 27 || info.State.Msgs != 0 {
			return fmt.Errorf("after a restart: first seq %d, %d messages; want 27, none", info.Config.FirstSeq, info.State.Msgs)
		}
		return nil
	})
}

// TestConsumeIngestStreamCreatedAgain: AURUM_INGEST deleted and created
// again (by hand) under a running gateway starts its sequences over; the
// reader notices by the stream's creation time and reads the new stream
// from its start instead of waiting for the old sequence to come back.
func TestConsumeIngestStreamCreatedAgain(t *testing.T) {
	ctx := testCtx(t)
	opts := testOptions(t.TempDir())
	opts.IngestRetryMin, opts.IngestRetryMax = 10*time.Millisecond, 50*time.Millisecond
	l := openLog(t, opts)
	pjs := producer(t, l)
	publishRange(t, ctx, pjs, 1, 5)
	var once sync.Once
	got := consumeUntil(t, ctx, l, 10, func(m RawMsg) {
		if m.Seq != 5 {
			return
		}
		once.Do(func() {
			if err := l.js.DeleteStream(ctx, StreamIngest); err != nil {
				t.Error(err)
				return
			}
			if _, err := l.js.CreateStream(ctx, l.ingestConfig()); err != nil {
				t.Error(err)
				return
			}
			for i := 1; i <= 3; i++ {
				if _, err := pjs.Publish(ctx, "aurum.ingest.web", payload(100+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}, func(got []RawMsg) bool { return len(got) >= 8 })
	if !slices.Equal(seqsOf(got), []uint64{1, 2, 3, 4, 5, 1, 2, 3}) {
		t.Fatalf("handled %v, want 1..5 of the first stream, then 1..3 of the second", seqsOf(got))
	}
	if got[5].Stream == got[0].Stream || string(got[5].Data) != string(payload(101)) {
		t.Fatalf("first message of the new stream: %+v (old stream %d)", got[5], got[0].Stream)
	}
}
