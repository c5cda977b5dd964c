package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/aurumcdp/aurum/event"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
)

// The replay pipeline (offline replay and live rebuild): a fetch stage
// reads the log ahead of the apply stage and opens each event's sealed
// properties with its data key, so that the apply goroutine, the one that
// bounds a replay's rate, neither waits on the log nor spends its time in
// AES-GCM:
//
//	log.Reader ──▶ fetcher (one goroutine: Next, decode, open) ──chan──▶ readGroup → group.add → StateMachine.Apply
//	                                                                 (the opener finds the plaintext in opened)
//
// The state machine still decodes the entry and calls its opener as it
// always does; the replay's opener (preOpener) answers from the entry's
// opened plaintexts when it holds the sealed value, and opens it itself
// otherwise. A plaintext is a pure function of (key, sealed value) while
// the key exists, so the state is the same either way; a key destroyed
// between the fetch and the apply (an erasure while a live rebuild runs)
// only moves the open earlier, as the live apply that ran before the
// erasure saw it.

// fetchAheadBytes bounds the bytes of log entries (and their opened
// plaintexts) the fetch stage holds ahead of the apply stage; one entry is
// always let through, however large. The apply stage takes an entry in
// far less time than the stage needs to fetch a few: a few entries ahead
// keep it fed, and every byte more is resident memory (the reader's own
// buffer, readerBatchBytes, comes on top).
const fetchAheadBytes = 8 << 20

// fetchAheadEntries bounds the entries in the fetch stage's channel.
const fetchAheadEntries = 256

// fetched is a log entry and the plaintexts of its sealed properties,
// by sealed value.
type fetched struct {
	alog.Entry
	opened map[string][]byte
	size   int64 // counted against fetchAheadBytes
}

// fetcher is the fetch stage: one goroutine reading r ahead into a bounded
// channel. It owns r from start until stop returns; stop (idempotent)
// cancels it and waits for it. After an error of r (ErrClosed included)
// next returns that error.
type fetcher struct {
	r    *alog.Reader
	keys *seal.Keyring // nil: no properties opened ahead
	max  int64         // bytes held ahead (fetchAheadBytes)
	out  chan fetched
	err  error         // set before out is closed
	free chan struct{} // a token when the consumer took an entry
	held atomic.Int64  // bytes in out and in the goroutine's hands

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// startFetcher starts reading r from its position, holding at most
// maxBytes ahead (and one entry more). keys, when set, opens the
// properties of event entries ahead.
func startFetcher(ctx context.Context, r *alog.Reader, keys *seal.Keyring, maxBytes int64) *fetcher {
	if maxBytes <= 0 {
		maxBytes = fetchAheadBytes
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &fetcher{
		r: r, keys: keys, max: maxBytes, cancel: cancel,
		out:  make(chan fetched, fetchAheadEntries),
		free: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	go f.run(ctx)
	return f
}

func (f *fetcher) run(ctx context.Context) {
	defer close(f.done)
	defer close(f.out)
	for {
		for f.held.Load() >= f.max {
			select {
			case <-f.free:
			case <-ctx.Done():
				f.err = ctx.Err()
				return
			}
		}
		ent, err := f.r.Next(ctx)
		if err != nil {
			f.err = err
			return
		}
		fe := fetched{Entry: ent, size: int64(len(ent.Data))}
		if f.keys != nil && ent.Subject == projections.SubjectEvents {
			fe.opened, fe.size = openAhead(f.keys, ent.Data, fe.size)
		}
		f.held.Add(fe.size)
		select {
		case f.out <- fe:
		case <-ctx.Done():
			f.err = ctx.Err()
			return
		}
	}
}

// openAhead decodes an events entry and opens its records' sealed
// properties. What fails to decode or open is left to the apply stage,
// which meets the same failure and handles it (a corrupt entry skipped, an
// unreadable value taken as absent).
func openAhead(keys *seal.Keyring, data []byte, size int64) (map[string][]byte, int64) {
	b, err := event.SkimBatch(data) // views of data: the map keys are copies
	if err != nil {
		return nil, size
	}
	var opened map[string][]byte
	for i := range b.Records {
		rec := &b.Records[i]
		if len(rec.SealedProperties) == 0 {
			continue
		}
		pt, err := keys.Open(rec.Key, rec.SealedProperties)
		if err != nil {
			continue
		}
		if opened == nil {
			opened = make(map[string][]byte, len(b.Records))
		}
		opened[string(rec.SealedProperties)] = pt
		size += int64(len(rec.SealedProperties) + len(pt))
	}
	return opened, size
}

// next returns the next entry, waiting for the fetch stage.
func (f *fetcher) next(ctx context.Context) (fetched, error) {
	select {
	case fe, ok := <-f.out:
		if !ok {
			<-f.done
			return fetched{}, f.err
		}
		f.held.Add(-fe.size)
		select {
		case f.free <- struct{}{}:
		default:
		}
		return fe, nil
	case <-ctx.Done():
		return fetched{}, fmt.Errorf("engine: replay: %w", ctx.Err())
	}
}

// stop cancels the fetch stage and waits for its goroutine.
func (f *fetcher) stop() {
	f.once.Do(func() {
		f.cancel()
		<-f.done
	})
}

// preOpener is the replay state machine's opener: the current entry's
// plaintexts opened ahead, or keys opened now (stateOpener). cur is set by
// the apply goroutine before each entry (it reads it, and so do the
// partition workers of its Apply, which run between two such writes).
type preOpener struct {
	cur  map[string][]byte
	open func(keyID, sealed []byte) ([]byte, error)
	hits atomic.Int64 // properties answered from cur
}

func newPreOpener(keys *seal.Keyring) *preOpener {
	return &preOpener{open: stateOpener(keys)}
}

func (p *preOpener) Open(keyID, sealed []byte) ([]byte, error) {
	if pt, ok := p.cur[string(sealed)]; ok {
		p.hits.Add(1)
		return pt, nil
	}
	return p.open(keyID, sealed)
}
