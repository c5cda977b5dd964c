package activation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/activation/connector"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/store"
)

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("activation: closed")

// ConsumerPrefix prefixes the durable consumer name of each destination.
const ConsumerPrefix = "webhook-"

// deleteTimeout bounds the deletion of a removed destination's consumer.
const deleteTimeout = 10 * time.Second

// Dispatcher runs one worker per destination. Its methods are safe for
// concurrent use.
type Dispatcher struct {
	log       *alog.Log
	opts      Options
	client    *http.Client
	ownClient bool
	refs      store.ReadWriter
	optsErr   error // from Options.Validate; returned by Set

	mu      sync.Mutex // serialises Set and Close
	closed  bool
	workers map[string]*worker
	dests   []Destination // as of the last Set (also while suspended)

	statsMu sync.Mutex
	stats   map[string]*statsCell
}

// NewDispatcher returns a Dispatcher delivering from l; it starts no
// worker until Set. Invalid options (Options.Validate) make every Set
// fail with their error.
func NewDispatcher(l *alog.Log, opts Options) *Dispatcher {
	opts.EnsureDefaults()
	d := &Dispatcher{
		log:     l,
		opts:    opts,
		optsErr: opts.Validate(),
		client:  opts.Client,
		workers: make(map[string]*worker),
		stats:   make(map[string]*statsCell),
		refs:    opts.Refs,
	}
	if d.refs == nil {
		d.refs = store.NewMem()
	}
	if d.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		d.client = &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
		d.ownClient = true
	}
	return d
}

// Set makes the running workers match dests: it starts a worker for each
// new destination, restarts the worker of a changed one (its consumer and
// position are kept, its filters updated), and stops the worker of each
// destination not in dests and deletes its consumer (and position): Set
// takes the complete list. If any destination is invalid or two share a
// name, Set changes nothing and returns the errors. After Close it returns
// ErrClosed. Set waits for the stopped workers (an attempt in flight is
// cancelled).
func (d *Dispatcher) Set(dests []Destination) error {
	if d.optsErr != nil {
		return d.optsErr
	}
	want := make(map[string]Destination, len(dests))
	var errs []error
	for _, dest := range dests {
		if err := dest.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := want[dest.Name]; dup {
			errs = append(errs, fmt.Errorf("activation: destination %s: duplicate name", dest.Name))
			continue
		}
		if !dest.IsWebhook() {
			dest.Channel = Kinds()[dest.Kind].Channel
		}
		dest.Audiences = slices.Clone(dest.Audiences)
		slices.Sort(dest.Audiences)
		dest.Audiences = slices.Compact(dest.Audiences)
		want[dest.Name] = dest
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	// Stop removed and changed destinations, all at once.
	var stopping []*worker
	for name, w := range d.workers {
		if nd, ok := want[name]; !ok || !sameDestination(nd, w.dest) {
			w.cancel()
			stopping = append(stopping, w)
		}
	}
	for _, w := range stopping {
		<-w.done
		delete(d.workers, w.dest.Name)
		if _, ok := want[w.dest.Name]; ok {
			continue
		}
		d.statsMu.Lock()
		delete(d.stats, w.dest.Name)
		d.statsMu.Unlock()
		if err := d.dropRefs(w.dest.Name); err != nil {
			errs = append(errs, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
		err := d.log.DeleteConsumer(ctx, alog.StreamOut, w.durable)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("activation: remove %s: %w", w.dest.Name, err))
		}
	}
	d.dests = d.dests[:0]
	for _, name := range slices.Sorted(maps.Keys(want)) {
		d.dests = append(d.dests, want[name])
		if _, ok := d.workers[name]; ok {
			continue
		}
		d.workers[name] = d.start(want[name])
	}
	return errors.Join(errs...)
}

// dropRefs deletes the connector refs of a removed destination.
func (d *Dispatcher) dropRefs(name string) error {
	var keys [][]byte
	var err error
	for _, p := range []string{refMember, refWithdrawn, refFormer} {
		prefix := []byte(p + name + "\x00")
		if err == nil {
			err = d.refs.Scan(prefix, store.PrefixEnd(prefix), false, func(k, _ []byte) bool {
				keys = append(keys, bytes.Clone(k))
				return true
			})
		}
	}
	for _, k := range keys {
		if err == nil {
			err = d.refs.Delete(k)
		}
	}
	if err != nil {
		return fmt.Errorf("activation: remove %s: refs: %w", name, err)
	}
	return nil
}

// Suspend stops every worker and waits for them, keeping their consumers
// and positions (and counters): in a cluster, a node that is not the
// leader runs no worker, and the leader's continue where it stopped. A
// later Set starts them again. After Close it returns ErrClosed.
func (d *Dispatcher) Suspend() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.stopAll()
	return nil
}

// stopAll cancels every worker and waits for them. Called with d.mu held.
func (d *Dispatcher) stopAll() {
	for _, w := range d.workers {
		w.cancel()
	}
	for name, w := range d.workers {
		<-w.done
		delete(d.workers, name)
	}
}

func sameDestination(a, b Destination) bool {
	return a.Name == b.Name && a.URL == b.URL && a.Secret == b.Secret &&
		a.Channel == b.Channel && slices.Equal(a.Audiences, b.Audiences) && a.Since.Equal(b.Since) &&
		a.Kind == b.Kind && bytes.Equal(a.Config, b.Config) && a.Version == b.Version &&
		a.SyncedAt == b.SyncedAt && a.OutStart == b.OutStart
}

// Close stops every worker and waits for them; an attempt in flight is
// cancelled (and repeated after a restart). Consumers and their positions
// are kept. Close is idempotent.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	d.stopAll()
	if d.ownClient {
		d.client.CloseIdleConnections()
	}
	return nil
}

// Stats returns a copy of each configured destination's counters, by name.
func (d *Dispatcher) Stats() map[string]DestStats {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	out := make(map[string]DestStats, len(d.stats))
	for name, c := range d.stats {
		c.mu.Lock()
		out[name] = c.s
		c.mu.Unlock()
	}
	return out
}

// statsCell holds one destination's counters; workers update it.
type statsCell struct {
	mu sync.Mutex
	s  DestStats
}

func (c *statsCell) update(fn func(*DestStats)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(&c.s)
}

// start starts the worker of dest. Called with d.mu held.
func (d *Dispatcher) start(dest Destination) *worker {
	d.statsMu.Lock()
	cell, ok := d.stats[dest.Name]
	if !ok {
		cell = &statsCell{}
		d.stats[dest.Name] = cell
	}
	d.statsMu.Unlock()
	filters := make([]string, len(dest.Audiences))
	for i, a := range dest.Audiences {
		filters[i] = alog.AudiencePrefix + a + ".>"
	}
	ctx, cancel := context.WithCancel(context.Background())
	var conn connector.Connector
	var kind connector.Kind
	if !dest.IsWebhook() {
		kind = Kinds()[dest.Kind]
		var err error
		conn, err = dest.connector(connector.Env{Destination: dest.Name, Client: d.client, Now: d.opts.Now})
		if err != nil { // checked by Set: cannot happen
			panic(err)
		}
		cell.update(func(s *DestStats) {
			if dest.SyncedAt == 0 {
				s.FirstSync = SyncPending
			}
		})
	}
	w := &worker{
		kind:    kind,
		conn:    conn,
		d:       d,
		dest:    dest,
		durable: ConsumerPrefix + dest.Name,
		filters: filters,
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		stats:   cell,
		logger:  d.opts.Logger.With("destination", dest.Name),
	}
	cell.update(func(s *DestStats) { s.Running = true })
	go w.run() // owned by d: stopped by cancel, waited for on done
	return w
}
