package projections

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/store"
)

// DefaultApplyWorkers is the default of Options.ApplyWorkers: the CPUs the
// Go runtime may use, at most 8.
func DefaultApplyWorkers() int { return min(runtime.GOMAXPROCS(0), 8) }

// applyPartitions runs every partition's state machine on its command.
//
// Partitions touch disjoint key ranges and read only their own keys and
// keys no partition writes (the keychain stage's and the definitions), so
// they do not depend on each other within an entry. With more than one
// worker they run at once: each partition applies its command to its own
// store.Overlay over the entry's batch, read by all of them through a
// store.SharedReader (and the state cache behind it) while none writes it.
// When all are done the overlays are written to the batch in partition
// order, each in key order: the batch then holds what applying them one
// after the other writes, and it still commits with meta/applied as one
// Pebble batch. A partition that writes outside its key range fails the
// entry. On an error nothing of the partition stage is written and the
// error of the lowest partition that failed is returned (the one the
// sequential order meets first).
//
// The workers are goroutines of this call (at most ApplyWorkers - 1 besides
// the caller's), all finished when it returns.
func (sm *StateMachine) applyPartitions(rw store.ReadWriter, cmds []PartitionCommand) error {
	n := len(sm.partitions)
	workers := min(sm.opts.ApplyWorkers, n)
	if workers <= 1 {
		for i, p := range sm.partitions {
			if err := p.Apply(rw, &cmds[i]); err != nil {
				return err
			}
		}
		return nil
	}
	shared := store.NewSharedReader(rw)
	ovs := make([]*store.Overlay, n)
	errs := make([]error, n)
	var next atomic.Int64
	run := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			ovs[i] = store.NewOverlay(shared)
			pw := &partitionWriter{Overlay: ovs[i], prefix: PartitionPrefix(i), part: i, parts: n}
			errs[i] = sm.partitions[i].Apply(pw, &cmds[i])
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(run)
	}
	run()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	for i, ov := range ovs {
		if err := ov.WriteTo(rw); err != nil {
			return fmt.Errorf("projections: partition %d: write to the batch: %w", i, err)
		}
	}
	return nil
}

// partitionWriter is the store a partition applies to in parallel: its
// overlay, refusing writes outside the partition's keys (which other
// partitions could read, and which the partitions' order would then
// decide): its key range and the event records of its profiles (stored
// under gcr.RecordPrefix, keyed by event id and profile).
type partitionWriter struct {
	*store.Overlay
	prefix      []byte
	part, parts int
}

func (w *partitionWriter) owns(k []byte) bool {
	if bytes.HasPrefix(k, w.prefix) {
		return true
	}
	if !bytes.HasPrefix(k, []byte(gcr.RecordPrefix)) {
		return false
	}
	profile, ok := gcr.RecordProfile(k)
	return ok && gcr.PartitionOf(profile, w.parts) == w.part
}

func (w *partitionWriter) Set(k, v []byte) error {
	if !w.owns(k) {
		return fmt.Errorf("projections: partition %x wrote key %q outside its range", w.prefix, k)
	}
	return w.Overlay.Set(k, v)
}

func (w *partitionWriter) Delete(k []byte) error {
	if !w.owns(k) {
		return fmt.Errorf("projections: partition %x deleted key %q outside its range", w.prefix, k)
	}
	return w.Overlay.Delete(k)
}
