package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/engine/query"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/vmihailenco/msgpack/v5"
)

// tickLoop records the passage of time on the log: every TickPeriod a tick
// record; the state machine runs the profiles' due timers at each.
func (e *Engine) tickLoop(ctx context.Context) error {
	t := time.NewTicker(e.opts.TickPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if !e.leader() {
			continue // a singleton: the leader records time
		}
		now := e.opts.Now()
		c := projections.Control{Kind: projections.ControlTick, Time: now.UnixMilli()}
		data, err := msgpack.Marshal(&c)
		if err != nil {
			return err
		}
		if _, _, err := e.log.Append(ctx, projections.SubjectControl, fmt.Sprintf("tick-%d", now.UnixMilli()), data); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.opts.Logger.Warn("engine: tick append failed; time stands still until the next one", "err", err)
			continue
		}
		e.metrics.ticks.Inc()
	}
}

func (e *Engine) appendControl(ctx context.Context, c projections.Control) (uint64, error) {
	c.Time = e.opts.Now().UnixMilli()
	data, err := msgpack.Marshal(&c)
	if err != nil {
		return 0, fmt.Errorf("engine: encode control: %w", err)
	}
	seq, _, err := e.log.Append(ctx, projections.SubjectControl, base.ULIDString(e.ids.Next(e.opts.Now())), data)
	return seq, err
}

// PutAudience creates or replaces an audience through the log and waits
// until it is in effect. The rule is checked first: a rule that does not
// compile is refused with base.ErrInvalid and the position of the problem,
// one that names an audience that does not exist or makes a cycle of
// audiences with an *AudienceRefError.
func (e *Engine) PutAudience(ctx context.Context, d audience.Definition) (query.AudienceInfo, error) {
	d.Version, d.Created, d.Updated = 0, 0, 0
	if err := projections.ValidateAudience(d); err != nil {
		return query.AudienceInfo{}, fmt.Errorf("%w: %w", base.ErrInvalid, err)
	}
	if err := e.checkAudienceRefs(d); err != nil {
		return query.AudienceInfo{}, err
	}
	seq, err := e.appendControl(ctx, projections.Control{Kind: projections.ControlAudiencePut, Audience: d})
	if err != nil {
		return query.AudienceInfo{}, err
	}
	if err := e.WaitApplied(ctx, seq); err != nil {
		return query.AudienceInfo{}, err
	}
	return e.reader.Audience(d.Name)
}

// DeleteAudience deletes an audience through the log; its members exit.
// An audience that other rules name (in_audience) is refused with an
// *AudienceRefError naming them.
func (e *Engine) DeleteAudience(ctx context.Context, name string) error {
	if _, err := e.reader.Audience(name); err != nil {
		return err
	}
	if err := e.checkAudienceUnused(name); err != nil {
		return err
	}
	seq, err := e.appendControl(ctx, projections.Control{Kind: projections.ControlAudienceDelete, Audience: audience.Definition{Name: name}})
	if err != nil {
		return err
	}
	return e.WaitApplied(ctx, seq)
}
