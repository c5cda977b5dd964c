package log

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func waitFenced(t *testing.T, ctx context.Context, f *Future) (uint64, bool, error) {
	t.Helper()
	return f.Wait(ctx)
}

// outMsgs returns the messages of AURUM_OUT on subject, in order.
func outMsgs(t *testing.T, ctx context.Context, l *Log, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := l.js.Stream(ctx, StreamOut)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

func TestFenceClaimPublishSupersede(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	const subj = AudiencePrefix + "vip.entered"

	f1, err := l.ClaimFence(ctx, 3, 1, "n1")
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if f1.Seq == 0 || f1.Partition != 3 || f1.Epoch != 1 || f1.Node != "n1" {
		t.Fatalf("fence %+v", f1)
	}
	fut, err := l.AppendAsyncFenced(f1, subj, "a1", map[string]string{HeaderProfile: "P"}, []byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, dup, err := waitFenced(t, ctx, fut); err != nil || dup {
		t.Fatalf("fenced publish: dup %v err %v", dup, err)
	}
	// An idempotent re-claim by the same node at the same epoch (a restart).
	f1b, err := l.ClaimFence(ctx, 3, 1, "n1")
	if err != nil || f1b.Seq <= f1.Seq {
		t.Fatalf("re-claim: %+v %v", f1b, err)
	}
	// Another node at the same epoch is refused.
	if _, err := l.ClaimFence(ctx, 3, 1, "n2"); !errors.Is(err, ErrFenced) {
		t.Fatalf("same epoch, other node: %v, want ErrFenced", err)
	}
	// The superseded fence f1 no longer publishes.
	fut, err = l.AppendAsyncFenced(f1, subj, "a2", nil, []byte(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := waitFenced(t, ctx, fut); !errors.Is(err, ErrFenced) {
		t.Fatalf("publish under a superseded claim: %v, want ErrFenced", err)
	}

	// A newer epoch takes over; the stale owner is refused, both to publish
	// and to claim again.
	f2, err := l.ClaimFence(ctx, 3, 2, "n2")
	if err != nil {
		t.Fatalf("newer claim: %v", err)
	}
	fut, err = l.AppendAsyncFenced(f1b, subj, "a3", nil, []byte(`{"n":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := waitFenced(t, ctx, fut); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale publish: %v, want ErrFenced", err)
	}
	if _, err := l.ClaimFence(ctx, 3, 1, "n1"); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale claim: %v, want ErrFenced", err)
	}
	if _, err := l.RenewFence(ctx, f1b); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale renewal: %v, want ErrFenced", err)
	}
	fut, err = l.AppendAsyncFenced(f2, subj, "a4", nil, []byte(`{"n":4}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := waitFenced(t, ctx, fut); err != nil {
		t.Fatalf("new owner's publish: %v", err)
	}
	// Renewal moves the fence; the old sequence is then refused.
	f2r, err := l.RenewFence(ctx, f2)
	if err != nil || f2r.Seq <= f2.Seq || f2r.Epoch != 2 {
		t.Fatalf("renewal: %+v %v", f2r, err)
	}
	fut, err = l.AppendAsyncFenced(f2r, subj, "a5", nil, []byte(`{"n":5}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := waitFenced(t, ctx, fut); err != nil {
		t.Fatalf("publish after renewal: %v", err)
	}
	// Other partitions are independent.
	if _, err := l.ClaimFence(ctx, 4, 1, "n1"); err != nil {
		t.Fatalf("claim of another partition: %v", err)
	}

	var got []string
	for _, m := range outMsgs(t, ctx, l, subj) {
		got = append(got, m.Header.Get(jetstream.MsgIDHeader)+"@"+m.Header.Get(HeaderEpoch))
	}
	want := []string{"a1@3.1", "a4@3.2", "a5@3.2"}
	if len(got) != len(want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("stored %v, want %v", got, want)
		}
	}
}

// A message id already stored is answered as a duplicate by a fenced
// publish, under the current fence and under a superseded one.
func TestFenceDuplicateIDs(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	const subj = IdentityPrefix + "merged"
	f1, err := l.ClaimFence(ctx, 0, 1, "n1")
	if err != nil {
		t.Fatal(err)
	}
	fut, err := l.AppendAsyncFenced(f1, subj, "m1", nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	seq, dup, err := fut.Wait(ctx)
	if err != nil || dup {
		t.Fatalf("first: %d %v %v", seq, dup, err)
	}
	fut, err = l.AppendAsyncFenced(f1, subj, "m1", nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if seq2, dup, err := fut.Wait(ctx); err != nil || !dup || seq2 != seq {
		t.Fatalf("same id, same fence: seq %d dup %v err %v; want seq %d, a duplicate", seq2, dup, err, seq)
	}
	f2, err := l.ClaimFence(ctx, 0, 2, "n2")
	if err != nil {
		t.Fatal(err)
	}
	// The new owner re-publishes a row the old one had sent: a duplicate.
	fut, err = l.AppendAsyncFenced(f2, subj, "m1", nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, dup, err := fut.Wait(ctx); err != nil || !dup {
		t.Fatalf("same id, new fence: dup %v err %v; want a duplicate", dup, err)
	}
	// The stale owner: nats-server 2.15.2 checks the fence before the
	// message id, so a stale owner is told it is fenced even for an id
	// already stored (and stores nothing).
	fut, err = l.AppendAsyncFenced(f1, subj, "m1", nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, dup, err = fut.Wait(ctx); !errors.Is(err, ErrFenced) {
		t.Fatalf("same id, stale fence: dup %v err %v", dup, err)
	}
	if n := len(outMsgs(t, ctx, l, subj)); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
}

func TestFenceProgress(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	if pr, err := l.OutboxProgress(ctx, 2); err != nil || pr.Pos != nil || pr.Epoch != 0 || pr.Applied != 0 {
		t.Fatalf("no progress yet: %+v %v", pr, err)
	}
	f1, err := l.ClaimFence(ctx, 2, 1, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"k1", "k2", "k3"} {
		if err := l.SetOutboxProgress(ctx, f1, []byte(p), uint64(10+i)); err != nil {
			t.Fatalf("progress %s: %v", p, err)
		}
	}
	if pr, err := l.OutboxProgress(ctx, 2); err != nil || !bytes.Equal(pr.Pos, []byte("k3")) || pr.Epoch != 1 || pr.Applied != 12 {
		t.Fatalf("progress: %+v %v", pr, err)
	}
	// Each record rolls up the one before.
	if n := len(outMsgs(t, ctx, l, ProgressSubject(2))); n != 1 {
		t.Fatalf("%d progress messages stored, want 1", n)
	}
	if _, err := l.ClaimFence(ctx, 2, 2, "n2"); err != nil {
		t.Fatal(err)
	}
	// A stale owner cannot move the marker.
	if err := l.SetOutboxProgress(ctx, f1, []byte("k9"), 0); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale progress: %v, want ErrFenced", err)
	}
	if pr, err := l.OutboxProgress(ctx, 2); err != nil || !bytes.Equal(pr.Pos, []byte("k3")) || pr.Applied != 12 {
		t.Fatalf("progress after a stale write: %+v %v", pr, err)
	}
	if _, err := l.ClaimFence(ctx, -1, 1, "n1"); err == nil {
		t.Fatal("claim of partition -1 accepted")
	}
	if _, err := l.ClaimFence(ctx, 1, 0, "n1"); err == nil {
		t.Fatal("claim at epoch 0 accepted")
	}
}

// Fence subjects are not outputs: subscribers of aurum.audience.> do not
// see them, and Append refuses them (only the fence methods write there).
func TestFenceSubjectsApart(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	if _, _, err := l.Append(ctx, FenceSubject(1), "", []byte(`{}`)); !errors.Is(err, ErrInvalidSubject) {
		t.Fatalf("Append on a fence subject: %v, want ErrInvalidSubject", err)
	}
	f, err := l.ClaimFence(ctx, 1, 1, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetOutboxProgress(ctx, f, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err = l.Scan(ctx, StreamOut, ScanOptions{HeadersOnly: true}, func(m ScanMsg) error {
		if len(m.Header[HeaderProfile]) > 0 {
			seen = append(seen, m.Subject)
		}
		return nil
	})
	if err != nil || len(seen) != 0 {
		t.Fatalf("fence messages with a profile header: %v %v", seen, err)
	}
}

// TestCheckFence: the read check of a claim (what delivery workers make
// before each step): none, the caller's own (and renewed), superseded by a
// newer epoch or another node.
func TestCheckFence(t *testing.T) {
	l := openLog(t, testOptions(t.TempDir()))
	ctx := testCtx(t)
	type probe struct {
		epoch  uint64
		node   string
		fenced bool
	}
	steps := []struct {
		name   string
		do     func() error
		probes []probe
	}{
		{"no claim yet", nil, []probe{{1, "n1", true}}},
		{"n1 claims at 1", func() error { _, err := l.ClaimFence(ctx, 5, 1, "n1"); return err },
			[]probe{{1, "n1", false}, {1, "n2", true}, {2, "n1", true}}},
		{"n1 renews at 1", func() error {
			f, err := l.ClaimFence(ctx, 5, 1, "n1")
			if err == nil {
				_, err = l.RenewFence(ctx, f)
			}
			return err
		}, []probe{{1, "n1", false}}},
		{"n2 claims at 2", func() error { _, err := l.ClaimFence(ctx, 5, 2, "n2"); return err },
			[]probe{{1, "n1", true}, {2, "n2", false}, {2, "n1", true}}},
	}
	for _, s := range steps {
		if s.do != nil {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		for _, p := range s.probes {
			err := l.CheckFence(ctx, 5, p.epoch, p.node)
			if p.fenced != errors.Is(err, ErrFenced) || (!p.fenced && err != nil) {
				t.Fatalf("%s: CheckFence(epoch %d, %s) = %v, want fenced %v", s.name, p.epoch, p.node, err, p.fenced)
			}
		}
	}
	// Another partition is untouched by partition 5's claims.
	if err := l.CheckFence(ctx, 6, 2, "n2"); !errors.Is(err, ErrFenced) {
		t.Fatalf("partition 6: %v, want ErrFenced (no claim)", err)
	}
	if err := l.CheckFence(ctx, -1, 1, "n1"); err == nil || errors.Is(err, ErrFenced) {
		t.Fatalf("partition -1: %v, want a plain error", err)
	}
}
