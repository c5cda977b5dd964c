package engine

import (
	"context"
	"time"
)

// leadershipPoll is how often the leadership watcher asks the cluster.
const leadershipPoll = 100 * time.Millisecond

// leader reports whether this node runs the cluster-wide singletons: the
// ticker, the webhook destination workers and the shared steps of an
// erasure. A single node always does.
func (e *Engine) leader() bool { return e.opts.Cluster == nil || e.opts.Cluster.IsLeader() }

// watchLeadership starts and stops the webhook destination workers as this
// node gains and loses the leadership. (The ticker and the erasure worker
// ask leader() each time they act.)
func (e *Engine) watchLeadership(ctx context.Context) error {
	t := time.NewTicker(leadershipPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		is := e.leader()
		e.destMu.Lock()
		same := e.destsLeader == is
		e.destMu.Unlock()
		if same {
			continue
		}
		e.opts.Logger.Info("engine: cluster leadership changed", "leader", is)
		if err := e.reloadDestinations(); err != nil {
			e.opts.Logger.Error("engine: reload destinations", "err", err)
		}
		if is {
			e.privacy.KickErasures()
		}
	}
}
