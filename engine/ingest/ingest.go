// Package ingest is the ingest edge of the engine: validate → seal →
// group commit. Ingest seals the events of a source (identifiers hashed,
// personal values sealed with the data key of the event's anchor
// identifier) and queues their records for the committer, which joins the
// records of concurrent calls into one log append on aurum.log.events. The
// gateway (RunGateway) does the same for raw events that producers publish
// on aurum.ingest.<source>, and keeps invalid ones on the dead-letter
// stream; IngestJSON takes a caller's raw JSON documents, parsed as the
// gateway parses them.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/identity"
	"github.com/aurumcdp/aurum/seal"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrUnknownSource is returned when events name a source that does not exist.
var ErrUnknownSource = errors.New("engine: unknown source")

// Sources says which sources exist (the access stage's table).
type Sources interface {
	SourceExists(name string) bool
}

// Options configure an Edge. Identity, Now and MaxBatchBytes are required
// (the engine passes its own, defaults applied).
type Options struct {
	// Identity ranks identifiers (the anchor of an event) and blocks values.
	Identity *identity.Config
	// PhoneRegion is the default region of phone numbers.
	PhoneRegion string
	// MaxBatchBytes bounds one log append.
	MaxBatchBytes int
	// Now is the edge clock that stamps receive times and ids.
	Now func() time.Time
	// Registry receives the edge's metrics (aurum_ingest_*, aurum_log_append*).
	Registry prometheus.Registerer
	// Leader, when set (a cluster), says whether this node runs the NATS
	// gateway: one reader of AURUM_INGEST per cluster. Nil: always.
	Leader func() bool
}

// Edge is the ingest edge: it validates, seals and group-commits events
// onto the log (Ingest, the committer) and runs the NATS gateway of
// aurum.ingest.<source> (RunGateway). It owns no goroutine: the engine runs
// RunCommitter and RunGateway.
type Edge struct {
	opts    Options
	ctx     context.Context // the node's lifetime: done means closed
	log     *alog.Log
	keys    *seal.Keyring
	ids     *base.IDSource
	sources Sources
	metrics *metrics
	commit  *committer
	chunks  sync.Pool // *[]byte of recordChunk bytes: seal's record buffers
	// sealPerValue is a test hook (never set in production): seal hashes
	// and seals with Keyring.Hash and Keyring.Seal per value, the
	// reference path of seal.Sealer.
	sealPerValue bool
}

// New returns the edge of a node whose lifetime is ctx (when it is done,
// calls return base.ErrClosed).
func New(ctx context.Context, opts Options, l *alog.Log, keys *seal.Keyring, ids *base.IDSource, sources Sources) *Edge {
	e := &Edge{opts: opts, ctx: ctx, log: l, keys: keys, ids: ids, sources: sources, metrics: newMetrics(opts.Registry)}
	e.commit = newCommitter(e)
	return e
}

// RunCommitter runs the group commit until ctx ends.
func (e *Edge) RunCommitter(ctx context.Context) error { return e.commit.run(ctx) }

// ParseOptions returns the options the edge parses events with: the identity
// config's blocked values, the phone region and the clock.
func (e *Edge) ParseOptions() event.ParseOptions {
	cfg := e.opts.Identity
	return event.ParseOptions{
		Now:           e.opts.Now(),
		Blocked:       cfg.IsBlocked,
		DefaultRegion: e.opts.PhoneRegion,
	}
}

// Ingest seals the events of source and appends them to the log. It returns
// when they are durable (see Options.FsyncAlways) or with an error, in which
// case none, some or all may have been appended: a retry with the same
// messageIds is deduplicated by the state machine.
func (e *Edge) Ingest(ctx context.Context, source string, evs []event.Event) error {
	wait, err := e.ingestAsync(ctx, source, evs)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// ingestAsync seals the events and queues their records for the committer,
// in call order; wait returns when they are durable (see Ingest). wait
// must be called once.
func (e *Edge) ingestAsync(ctx context.Context, source string, evs []event.Event) (wait func(context.Context) error, err error) {
	p, err := e.sealed(source, evs)
	if err != nil {
		return nil, err
	}
	return e.enqueue(ctx, p)
}

// sealed seals the events of source into a pending append (nil when there
// is nothing to append: no events, or every one belonged to an erased
// person). It may run concurrently with other calls.
func (e *Edge) sealed(source string, evs []event.Event) (*pending, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	if !e.sources.SourceExists(source) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSource, source)
	}
	received := e.opts.Now()
	var chunks []*[]byte
	recs, size, err := e.sealChunks(source, evs, received, &chunks)
	if err != nil {
		e.releaseChunks(chunks)
		return nil, err
	}
	if len(recs) == 0 {
		e.releaseChunks(chunks)
		return nil, nil // every event belonged to an erased person
	}
	return &pending{source: source, recs: recs, n: len(recs), chunks: chunks, size: size, done: make(chan error, 1)}, nil
}

// enqueue queues p (from sealed; nil: nothing) for the committer; appends
// keep the order of the enqueue calls. wait returns when p's records are
// durable and must be called once.
func (e *Edge) enqueue(ctx context.Context, p *pending) (wait func(context.Context) error, err error) {
	if p == nil {
		return func(context.Context) error { return nil }, nil
	}
	select {
	case e.commit.in <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.ctx.Done():
		return nil, base.ErrClosed
	}
	return func(ctx context.Context) error {
		select {
		case err := <-p.done:
			if err == nil {
				e.metrics.ingested.WithLabelValues(p.source).Add(float64(p.n))
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-e.ctx.Done():
			return base.ErrClosed
		}
	}, nil
}

// seal turns plaintext events into encoded log records: identifiers hashed,
// personal values sealed with the data key of the event's anchor identifier
// (its highest-priority identifier), which is created on first use. An
// event whose anchor key was destroyed (an erased person's identifier) is
// dropped and counted; the state machine drops the events that carry an
// erased identifier elsewhere than as their anchor.
func (e *Edge) seal(source string, evs []event.Event, received time.Time) ([][]byte, int, error) {
	return e.sealChunks(source, evs, received, nil)
}

// sealChunks is seal. With chunks set, the records are encoded into
// buffers of the Edge's pool, which it appends to *chunks for
// releaseChunks once the records have been copied (the committer's
// encode); without, into new buffers.
func (e *Edge) sealChunks(source string, evs []event.Event, received time.Time, chunks *[]*[]byte) ([][]byte, int, error) {
	type prepared struct {
		rec    event.Record
		anchor []byte
	}
	preps := make([]prepared, len(evs))
	anchors := make([][]byte, 0, len(evs))
	sl := e.newSealing(len(evs))
	defer sl.close()
	for i := range evs {
		ev := &evs[i]
		rec := event.Record{
			ID:         e.ids.Next(received),
			MessageID:  ev.MessageID,
			Source:     source,
			Kind:       ev.Kind,
			Event:      ev.Event,
			Name:       ev.Name,
			Time:       ev.Timestamp.UnixMilli(),
			Received:   received.UnixMilli(),
			Channel:    ev.Channel,
			DeviceType: ev.DeviceType,
			Consent:    ev.Consent,
			IDs:        make([]event.IDRef, len(ev.Identifiers)),
		}
		if rec.MessageID == "" {
			rec.MessageID = "aurum-" + base.ULIDString(rec.ID)
		}
		anchor, best := -1, 0
		for j, id := range ev.Identifiers {
			rec.IDs[j] = event.IDRef{Type: id.Type, Hash: sl.hash(id.Type, id.Value), Weak: id.Weak}
			if r := e.opts.Identity.Rank(id.Type); !id.Weak && (anchor < 0 || r < best) {
				anchor, best = j, r
			}
		}
		if anchor < 0 {
			anchor = 0 // only weak identifiers (an alias): the first one anchors
		}
		if len(rec.IDs) == 0 {
			return nil, 0, fmt.Errorf("engine: event %d has no identifier", i)
		}
		rec.Key = rec.IDs[anchor].Hash
		preps[i] = prepared{rec: rec, anchor: rec.Key}
		anchors = append(anchors, rec.Key)
	}
	if err := sl.ensure(anchors); err != nil {
		return nil, 0, fmt.Errorf("engine: data keys: %w", err)
	}
	out := make([][]byte, 0, len(evs))
	size := 0
	var buf []byte // the records' encodings, one after the other
	var keys []string
	for i := range preps {
		rec, ev := &preps[i].rec, &evs[i]
		for j, id := range ev.Identifiers {
			s, err := sl.sealValue(rec.Key, id.Value)
			if j == 0 && errors.Is(err, seal.ErrKeyDestroyed) {
				break
			}
			if err != nil {
				return nil, 0, err
			}
			rec.IDs[j].Sealed = s
		}
		if len(ev.Identifiers) > 0 && rec.IDs[0].Sealed == nil {
			e.metrics.suppressedEdge.Inc()
			continue
		}
		if len(ev.Traits) > 0 {
			rec.Traits = make(map[string][]byte, len(ev.Traits))
			for k, v := range ev.Traits {
				s, err := sl.sealValue(rec.Key, v)
				if err != nil {
					return nil, 0, err
				}
				rec.Traits[k] = s
			}
		}
		priv := event.Private{UserID: ev.UserID, AnonymousID: ev.AnonymousID, PreviousID: ev.PreviousID,
			GroupID: ev.GroupID, Context: ev.Context}
		if !ev.SentAt.IsZero() {
			priv.SentAt = ev.SentAt.UnixMilli()
		}
		s, err := sl.sealValue(rec.Key, &priv)
		if err != nil {
			return nil, 0, err
		}
		rec.Private = s
		if len(ev.Properties) > 0 {
			// The properties are personal data too (a note, a search, a
			// shipping name): sealed whole, opened by the state machine.
			if rec.SealedProperties, err = sl.sealValue(rec.Key, ev.Properties); err != nil {
				return nil, 0, err
			}
		}
		if need := event.RecordSize(rec); cap(buf)-len(buf) < need {
			// Chunks below the runtime's large-object size (as the
			// Sealer's arenas), reused: one new buffer of 1 KiB per event
			// was about three times the records' size, and every byte
			// allocated here brings the next GC cycle (which marks the
			// apply loop's caches) closer.
			buf = e.chunk(need, chunks)
		}
		start := len(buf)
		buf, keys = event.AppendRecord(buf, keys, rec)
		out = append(out, buf[start:len(buf):len(buf)])
		size += len(buf) - start
	}
	return out, size, nil
}

// recordChunk is the size of the buffers seal encodes records into.
const recordChunk = 16 << 10

// chunk returns an empty buffer of at least need bytes for records: from
// the pool when need fits a pooled chunk and chunks is set (the chunk is
// then appended to *chunks).
func (e *Edge) chunk(need int, chunks *[]*[]byte) []byte {
	if chunks == nil || need > recordChunk {
		return make([]byte, 0, max(need, recordChunk))
	}
	c, _ := e.chunks.Get().(*[]byte)
	if c == nil {
		b := make([]byte, 0, recordChunk)
		c = &b
	}
	*chunks = append(*chunks, c)
	return (*c)[:0]
}

// releaseChunks returns record buffers to the pool. Their records must
// not be read afterwards.
func (e *Edge) releaseChunks(chunks []*[]byte) {
	for _, c := range chunks {
		e.chunks.Put(c)
	}
}

// sealing hashes and seals the values of one call of seal. By default it
// uses one seal.Sealer (cipher looked up once per record, nonces read in
// blocks, outputs in arenas) and one reused plaintext buffer; with
// Edge.sealPerValue (a test hook) it calls Keyring.Hash and Keyring.Seal
// per value.
// Both give the same hashes and equivalent sealed values (random nonces).
type sealing struct {
	e      *Edge
	sealer *seal.Sealer // nil: per value
	pt     []byte       // plaintext scratch, reused per value
}

func (e *Edge) newSealing(events int) *sealing {
	sl := &sealing{e: e}
	if !e.sealPerValue {
		sl.sealer = e.keys.NewSealer(events * 512)
	}
	return sl
}

func (sl *sealing) close() {
	if sl.sealer != nil {
		sl.sealer.Release() // the sealed values are copied into the records
	}
	clear(sl.pt[:cap(sl.pt)]) // personal data: do not leave it in the heap longer than needed
}

// ensure creates the data keys of anchors that do not exist yet; the
// Sealer keeps the cipher of each for the batch.
func (sl *sealing) ensure(anchors [][]byte) error {
	if sl.sealer == nil {
		return sl.e.keys.Ensure(anchors)
	}
	return sl.sealer.Ensure(anchors)
}

func (sl *sealing) hash(typ, value string) []byte {
	if sl.sealer == nil {
		return sl.e.keys.Hash(typ, value)
	}
	return sl.sealer.Hash(typ, value)
}

// sealValue seals the msgpack encoding of v (map keys sorted, integers
// compact): hand-written for JSON values and Private, the msgpack library
// for anything else. Both give the same bytes.
func (sl *sealing) sealValue(key []byte, v any) ([]byte, error) {
	var dst []byte
	if sl.sealer != nil {
		dst = sl.pt[:0]
	}
	pt, ok := sl.e.encodeValue(dst, v)
	if !ok {
		var err error
		if pt, err = encodeSorted(v); err != nil {
			return nil, fmt.Errorf("engine: encode value: %w", err)
		}
	}
	if sl.sealer == nil {
		return sl.e.keys.Seal(key, pt)
	}
	if ok && cap(pt) <= 64<<10 { // keep the scratch, unless a huge value grew it
		sl.pt = pt
	}
	return sl.sealer.Seal(key, pt)
}

func (e *Edge) encodeValue(dst []byte, v any) ([]byte, bool) {
	if p, ok := v.(*event.Private); ok {
		return event.AppendPrivateMsgpack(dst, p)
	}
	return event.AppendMsgpack(dst, v)
}

// encodeSorted encodes v as msgpack with map keys sorted, so that equal
// values have equal encodings.
func encodeSorted(v any) ([]byte, error) {
	var buf bytesBuffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.b, nil
}

type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// pending is one Ingest call waiting for its records to be durable.
type pending struct {
	source string
	recs   [][]byte // nil once the committer has copied them
	n      int      // len(recs)
	chunks []*[]byte
	size   int
	done   chan error
}

// inflight is one log append waiting for its acknowledgement.
type inflight struct {
	fut interface {
		Wait(context.Context) (uint64, bool, error)
	}
	err     error
	waiters []*pending
}

// committer groups records of concurrent Ingest calls into one log append
// (group commit): while appends are in flight, new requests queue up and go
// out together in the next one.
type committer struct {
	e     *Edge
	in    chan *pending
	acks  chan *inflight
	limit int
}

func newCommitter(e *Edge) *committer {
	return &committer{e: e, in: make(chan *pending, 1024), acks: make(chan *inflight, 64), limit: e.opts.MaxBatchBytes}
}

func (c *committer) run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // owned by run: waits for acks in append order
		defer wg.Done()
		for f := range c.acks {
			err := f.err
			if err == nil {
				_, _, err = f.fut.Wait(context.Background())
			}
			if err == nil {
				c.e.metrics.appends.Inc()
			}
			for _, p := range f.waiters {
				p.done <- err
			}
		}
	}()
	defer func() {
		close(c.acks)
		wg.Wait()
	}()
	var carry *pending
	for {
		var first *pending
		if carry != nil {
			first, carry = carry, nil
		} else {
			select {
			case first = <-c.in:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		group := []*pending{first}
		size := first.size
	fill:
		for size < c.limit {
			select {
			case p := <-c.in:
				if size+p.size > c.limit {
					carry = p
					break fill
				}
				group = append(group, p)
				size += p.size
			default:
				break fill
			}
		}
		c.acks <- c.append(group)
	}
}

// append encodes group as one event.Batch and starts its append.
func (c *committer) append(group []*pending) *inflight {
	f := &inflight{waiters: group}
	id := c.e.ids.Next(c.e.opts.Now())
	n := 0
	for _, p := range group {
		n += p.n
	}
	data, err := c.encode(group, id, n)
	for _, p := range group { // copied into data: the buffers go back to the pool
		c.e.releaseChunks(p.chunks)
		p.recs, p.chunks = nil, nil
	}
	if err != nil {
		f.err = fmt.Errorf("engine: encode batch: %w", err)
		return f
	}
	c.e.metrics.batchEvents.Observe(float64(n))
	fut, err := c.e.log.AppendAsync(projections.SubjectEvents, base.ULIDString(id), data)
	if err != nil {
		f.err = fmt.Errorf("engine: append: %w", err)
		return f
	}
	f.fut = fut
	return f
}

// encode joins the records of group into one entry (see event.EncodeBatch).
func (c *committer) encode(group []*pending, id []byte, n int) ([]byte, error) {
	received := c.e.opts.Now().UnixMilli()
	size := 32
	for _, p := range group {
		size += p.size
	}
	data := event.AppendBatchHeader(make([]byte, 0, size), id, received, n)
	for _, p := range group {
		for _, r := range p.recs {
			data = append(data, r...)
		}
	}
	return data, nil
}
