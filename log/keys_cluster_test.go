package log

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestKeysReplicatedStream: AURUM_KEYS at three replicas on a JetStream
// cluster, with three nodes' connections creating the same ids at once
// (where a conditional publish on a subject whose other publish is being
// replicated is refused as busy, 10164), then destroying them at once:
// every node is answered the same key per id, and every id ends destroyed
// with its key record erased.
func TestKeysReplicatedStream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server JetStream cluster")
	}
	clientURL := startJSCluster(t, 3)
	nodes := []*Log{openClusterLog(t, clientURL), openClusterLog(t, clientURL), openClusterLog(t, clientURL)}
	replicate(t, nodes[0], StreamKeys, 3)
	ctx := testCtx(t)
	const n = 40
	answers := createConcurrently(t, nodes, n)
	seqs := make([]uint64, n)
	for i := range n {
		subject, _ := keySubject(keyID(i))
		_, last, err := nodes[1].lastKeyRecord(ctx, subject)
		if err != nil || last.rec.kind != keyKindKey || !bytes.Equal(last.rec.wrapped, answers[0][i].Wrapped) {
			t.Fatalf("id %d stored %+v, %v", i, last, err)
		}
		seqs[i] = last.seq
	}
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = keyID(i)
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for j, l := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[j] = l.DestroyKeys(ctx, ids)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	stream, err := nodes[2].js.Stream(ctx, StreamKeys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if e, err := nodes[2].GetKey(ctx, keyID(i)); err != nil || e.State != KeyDestroyed {
			t.Fatalf("id %d after the destroys: %+v, %v", i, e, err)
		}
		if _, err := stream.GetMsg(ctx, seqs[i]); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatalf("id %d: key record %d still there: %v", i, seqs[i], err)
		}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("%d messages on AURUM_KEYS, want %d tombstones", info.State.Msgs, n)
	}
}
