package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
)

// gatewayDepth is how many pulled batches the gateway keeps in flight:
// while one batch's append waits for its acknowledgement, the next ones are
// parsed, sealed and queued for the committer (which joins them into
// bigger appends).
const gatewayDepth = 4

// RunGateway validates events that producers publish straight to
// aurum.ingest.<source>: valid ones go through Ingest like HTTP events,
// invalid ones to the dead-letter stream; then the raw messages are acked.
// Up to gatewayDepth pulls of 500 are in flight (log.ConsumeIngestPipelined);
// a batch is acked only once the append holding its events is durable. An
// event without messageId gets one from its raw stream sequence, so a
// redelivery after a crash is deduplicated.
func (e *Edge) RunGateway(ctx context.Context) error {
	return e.log.ConsumeIngestPipelined(ctx, 500, gatewayDepth, func(msgs []alog.RawMsg) func() error {
		bySource := map[string][]event.Event{}
		var order []string
		type rejected struct {
			m   alog.RawMsg
			err error
		}
		var bad []rejected
		for _, m := range msgs {
			ev, err := e.parseRaw(m)
			if err != nil {
				bad = append(bad, rejected{m, err})
				continue
			}
			if _, ok := bySource[m.Source]; !ok {
				order = append(order, m.Source)
			}
			bySource[m.Source] = append(bySource[m.Source], ev)
		}
		var waits []func(context.Context) error
		var startErr error
		for _, src := range order {
			wait, err := e.ingestAsync(ctx, src, bySource[src])
			if err != nil {
				startErr = fmt.Errorf("engine: gateway ingest %q: %w", src, err)
				break
			}
			waits = append(waits, wait)
		}
		return func() error {
			// Valid events first: if their ingest fails the batch is
			// redelivered, and dead letters written before would be
			// written twice.
			err := startErr
			for _, wait := range waits {
				if werr := wait(ctx); werr != nil && err == nil {
					err = fmt.Errorf("engine: gateway ingest: %w", werr)
				}
			}
			if err != nil {
				return err
			}
			for _, r := range bad {
				if err := e.deadLetter(ctx, r.m.Source, 0, r.m.Data, r.err); err != nil {
					return err
				}
			}
			return nil
		}
	})
}

func (e *Edge) parseRaw(m alog.RawMsg) (event.Event, error) {
	if !e.sources.SourceExists(m.Source) {
		return event.Event{}, &event.FieldError{Field: "source", Reason: fmt.Sprintf("unknown source %q (create it first)", m.Source)}
	}
	ev, err := event.Parse(m.Data, "", e.ParseOptions())
	if err != nil {
		return ev, err
	}
	if ev.MessageID == "" {
		ev.MessageID = "nats-" + strconv.FormatUint(m.Seq, 10)
	}
	return ev, nil
}

// DeadLetter keeps a rejected event on the dead-letter stream with its reason.
func (e *Edge) deadLetter(ctx context.Context, source string, index int, payload []byte, cause error) error {
	d := alog.DeadLetter{Source: source, Index: index, Reason: cause.Error(), Payload: payload, Received: e.opts.Now()}
	var fe *event.FieldError
	if errors.As(cause, &fe) {
		d.Field, d.Reason = fe.Field, fe.Reason
	}
	e.metrics.deadLetters.WithLabelValues(source).Inc()
	return e.log.DeadLetter(ctx, d)
}

// DeadLetter keeps a rejected event (field and reason given) on the
// dead-letter stream.
func (e *Edge) DeadLetter(ctx context.Context, source string, index int, field, reason string, payload []byte) error {
	return e.deadLetter(ctx, source, index, payload, &event.FieldError{Field: field, Reason: reason})
}

// DeadLetters reads dead-letter records from the stream position from.
func (e *Edge) DeadLetters(ctx context.Context, from uint64, max int) ([]alog.DeadLetter, error) {
	return e.log.ReadDeadLetters(ctx, from, max)
}
