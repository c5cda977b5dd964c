package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aurumcdp/aurum/activation"
	alog "github.com/aurumcdp/aurum/log"
)

// leadershipPoll is how often the leadership watcher asks the cluster.
const leadershipPoll = 100 * time.Millisecond

// deliveryPartition is the partition whose owner runs the destination
// workers in a cluster: they deliver under its claim's epoch and check
// that claim before each delivery step (deliveryFence).
const deliveryPartition = 0

// leader reports whether this node runs the cluster-wide singletons: the
// ticker, the model fits, the matcher. A single node always does.
func (e *Engine) leader() bool { return e.opts.Cluster == nil || e.opts.Cluster.IsLeader() }

// gatewayLeader is the NATS gateway's Leader: a cluster's leader reads
// AURUM_INGEST (one reader: the stream is purged behind it); a single node
// always does.
func gatewayLeader(opts Options) func() bool {
	if opts.Cluster == nil {
		return nil
	}
	return opts.Cluster.IsLeader
}

// erasureRunner reports whether this node runs the shared steps of an
// erasure (the scrub of the shared streams, the tools that hold the person,
// the completion): the deliverer, because removing the person from the
// tools that keep them goes through the destination workers, which run
// there only (a leader that did not deliver would wait on them for ever);
// and only once they run here (reloadDestinations: the activation store
// caught up, so the refs of the people the tools hold are all here).
func (e *Engine) erasureRunner() bool {
	epoch, ok := e.deliverer()
	return ok && e.destsReady.Load() == epoch+1
}

// deliverer reports whether this node runs the destination workers now,
// and under which epoch. A single node always does (epoch 0). In a cluster
// it is the owner of deliveryPartition once its outbox publisher has
// caught up and claimed the partition at the epoch Owns gives, until a
// fence check finds that claim superseded.
func (e *Engine) deliverer() (uint64, bool) {
	if e.opts.Cluster == nil {
		return 0, true
	}
	epoch, ok := e.opts.Cluster.Owns(deliveryPartition)
	if !ok {
		return 0, false
	}
	if c, ok := e.publisher.Claimed(deliveryPartition); !ok || c != epoch || e.deliveryFenced.Load() == epoch {
		return 0, false
	}
	return epoch, true
}

// deliveryFence is the activation.Fence of a cluster node: the local view
// (deliverer), then the authority, the last claim on deliveryPartition's
// fence subject (log.CheckFence). A superseded claim is remembered, so the
// watcher suspends the workers until the epoch changes.
type deliveryFence struct{ e *Engine }

func (f deliveryFence) Epoch(ctx context.Context) (uint64, error) {
	e := f.e
	epoch, ok := e.deliverer()
	if !ok {
		return 0, fmt.Errorf("%w: this node does not publish partition %d now", alog.ErrFenced, deliveryPartition)
	}
	if err := e.log.CheckFence(ctx, deliveryPartition, epoch, e.opts.Cluster.Name()); err != nil {
		if errors.Is(err, alog.ErrFenced) {
			e.deliveryFenced.Store(epoch)
		}
		return 0, err
	}
	return epoch, nil
}

// watchLeadership follows the cluster: it starts and stops the destination
// workers as this node gains and loses the deliveries (deliverer), and
// kicks the erasure worker when it gains them (the erasures' shared steps
// run there: erasureRunner). (The ticker asks leader() and the erasure
// worker erasureRunner() each time they act.)
func (e *Engine) watchLeadership(ctx context.Context) error {
	t := time.NewTicker(leadershipPoll)
	defer t.Stop()
	wasLeader := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if is := e.leader(); is != wasLeader {
			wasLeader = is
			e.opts.Logger.Info("engine: cluster leadership changed", "leader", is)
		}
		epoch, ok := e.deliverer()
		e.destMu.Lock()
		same := e.destsOK == ok && e.destsEpoch == epoch
		e.destMu.Unlock()
		if same {
			continue
		}
		e.opts.Logger.Info("engine: destination deliveries moved", "here", ok, "epoch", epoch)
		if err := e.reloadDestinations(); err != nil {
			e.opts.Logger.Error("engine: reload destinations", "err", err)
		}
		if ok {
			e.privacy.KickErasures() // the erasures' shared steps moved here too
		}
	}
}

// deliveryFence returns the dispatcher's Fence: none on a single node.
func (e *Engine) deliveryFence() activation.Fence {
	if e.opts.Cluster == nil {
		return nil
	}
	return deliveryFence{e}
}
