package engine

import (
	"bytes"
	"context"
	"fmt"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/vmihailenco/msgpack/v5"
)

// publishIdentityConfig appends the configured identity settings to the log
// when they differ from those in effect in the state, so that they take
// effect at a log position and every replay applies them at the same one.
// (If the state lags the log, an identical record may be appended twice:
// harmless.)
func (e *Engine) publishIdentityConfig(ctx context.Context) error {
	want, err := projections.EncodeIdentityConfig(*e.opts.Identity)
	if err != nil {
		return err
	}
	have, err := projections.IdentityConfig(e.state)
	if err != nil {
		return err
	}
	if bytes.Equal(want, have) {
		return nil
	}
	c := projections.Control{Kind: projections.ControlIdentityConfig, Config: want, Time: e.opts.Now().UnixMilli()}
	data, err := msgpack.Marshal(&c)
	if err != nil {
		return fmt.Errorf("engine: encode identity config: %w", err)
	}
	seq, _, err := e.log.Append(ctx, projections.SubjectControl, base.ULIDString(e.ids.Next(e.opts.Now())), data)
	if err != nil {
		return fmt.Errorf("engine: append identity config: %w", err)
	}
	e.opts.Logger.Info("identity settings changed; in effect from log position", "seq", seq)
	return nil
}
