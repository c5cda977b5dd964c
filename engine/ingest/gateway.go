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
	ev, err := e.parseDoc(m.Source, m.Data, e.ParseOptions())
	if err != nil {
		return ev, err
	}
	if ev.MessageID == "" {
		ev.MessageID = "nats-" + strconv.FormatUint(m.Seq, 10)
	}
	return ev, nil
}

// parseDoc parses one raw JSON event (a Segment message whose "type" says
// its call) of source with opts: the parse of the gateway and of
// IngestJSON. An unknown source is a *event.FieldError on "source".
func (e *Edge) parseDoc(source string, data []byte, opts event.ParseOptions) (event.Event, error) {
	if !e.sources.SourceExists(source) {
		return event.Event{}, &event.FieldError{Field: "source", Reason: fmt.Sprintf("unknown source %q (create it first)", source)}
	}
	return event.Parse(data, "", opts)
}

// IngestJSON parses raw JSON events of source as the gateway does (one
// Segment message per document, the edge's ParseOptions) and ingests them
// in order as Ingest does. A document that does not parse fails the call
// before anything is appended (its index and the *event.FieldError are in
// the error); nothing goes to the dead-letter stream: the caller holds the
// documents. An unknown source is ErrUnknownSource.
func (e *Edge) IngestJSON(ctx context.Context, source string, docs [][]byte) error {
	if len(docs) == 0 {
		return nil
	}
	if !e.sources.SourceExists(source) {
		return fmt.Errorf("%w: %q", ErrUnknownSource, source)
	}
	opts := e.ParseOptions()
	evs := make([]event.Event, len(docs))
	for i, d := range docs {
		ev, err := e.parseDoc(source, d, opts)
		if err != nil {
			return fmt.Errorf("engine: ingest %q: document %d: %w", source, i, err)
		}
		evs[i] = ev
	}
	return e.Ingest(ctx, source, evs)
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
