package store

import (
	"bytes"
	"slices"
	"sort"
	"sync"
)

// Overlay is a ReadWriter that keeps its writes in memory over a base
// Reader, which it never writes: Get and Scan see the writes merged over the
// base, and WriteTo hands them to a Writer in key order. It lets a piece of
// work (one partition's part of a log entry) be done apart from the batch it
// ends in, and joined to it afterwards, with the same result as writing the
// batch directly.
//
// An Overlay is not safe for concurrent use; its base is read by the
// Overlay's user alone only if the base says so (see Locked).
type Overlay struct {
	base   Reader
	writes map[string]overlayVal
	keys   []string // the keys of writes; sorted unless dirty
	dirty  bool
}

// overlayVal is a write: a value, or a deletion.
type overlayVal struct {
	v   []byte
	del bool
}

var _ ReadWriter = (*Overlay)(nil)

// NewOverlay returns an empty Overlay over base.
func NewOverlay(base Reader) *Overlay {
	return &Overlay{base: base, writes: make(map[string]overlayVal)}
}

// Get implements Reader: the overlay's write of key, else the base's value.
func (o *Overlay) Get(key []byte) ([]byte, error) {
	if w, ok := o.writes[string(key)]; ok {
		if w.del {
			return nil, ErrNotFound
		}
		return bytes.Clone(w.v), nil
	}
	return o.base.Get(key)
}

// Set implements Writer.
func (o *Overlay) Set(key, value []byte) error {
	o.put(key, overlayVal{v: append(make([]byte, 0, len(value)), value...)})
	return nil
}

// Delete implements Writer.
func (o *Overlay) Delete(key []byte) error {
	o.put(key, overlayVal{del: true})
	return nil
}

func (o *Overlay) put(key []byte, w overlayVal) {
	if _, ok := o.writes[string(key)]; !ok {
		k := string(key)
		o.keys = append(o.keys, k)
		o.dirty = true
		o.writes[k] = w
		return
	}
	o.writes[string(key)] = w
}

// Len is the number of keys written.
func (o *Overlay) Len() int { return len(o.keys) }

func (o *Overlay) sorted() []string {
	if o.dirty {
		sort.Strings(o.keys)
		o.dirty = false
	}
	return o.keys
}

// Scan implements Reader: the base's keys in [lower, upper) merged with the
// overlay's writes (a write replaces the base's value, a deletion hides
// it). Like an indexed Pebble batch's iterator, it sees the writes made
// before it started, not those fn makes.
func (o *Overlay) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		return nil
	}
	keys := o.sorted()
	lo := sort.SearchStrings(keys, string(lower))
	hi := len(keys)
	if upper != nil {
		hi = sort.SearchStrings(keys, string(upper))
	}
	// The writes in range, as they are now: fn may write to the overlay.
	own := make([]string, hi-lo)
	vals := make([]overlayVal, hi-lo)
	copy(own, keys[lo:hi])
	for i, k := range own {
		vals[i] = o.writes[k]
	}
	if reverse {
		slices.Reverse(own)
		slices.Reverse(vals)
	}
	// before reports whether own key a comes before base key b in the
	// scan's direction.
	before := func(a string, b []byte) bool {
		c := bytes.Compare([]byte(a), b)
		if reverse {
			return c > 0
		}
		return c < 0
	}
	i, stopped := 0, false
	emit := func() bool { // the i-th own write; false: fn stopped the scan
		w := vals[i]
		k := own[i]
		i++
		if w.del {
			return true
		}
		if !fn([]byte(k), w.v) {
			stopped = true
			return false
		}
		return true
	}
	err := o.base.Scan(lower, upper, reverse, func(k, v []byte) bool {
		for i < len(own) && before(own[i], k) {
			if !emit() {
				return false
			}
		}
		if i < len(own) && own[i] == string(k) {
			return emit() // the overlay's write replaces the base's value
		}
		if !fn(k, v) {
			stopped = true
			return false
		}
		return true
	})
	if err != nil || stopped {
		return err
	}
	for i < len(own) {
		if !emit() {
			return nil
		}
	}
	return nil
}

// WriteTo writes the overlay's writes to w in key order: w then reads as
// the overlay did (when w's contents are the overlay's base).
func (o *Overlay) WriteTo(w Writer) error {
	for _, k := range o.sorted() {
		ov := o.writes[k]
		var err error
		if ov.del {
			err = w.Delete([]byte(k))
		} else {
			err = w.Set([]byte(k), ov.v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// SharedReader makes a Reader that is not safe for concurrent use (an
// indexed batch, a cached view of one) readable by several goroutines while
// nobody writes it: each Get, and each chunk of a Scan, runs under a mutex.
// A Scan copies a chunk of keys and values under the lock and calls fn
// without it, so fn may read through the SharedReader (or an Overlay over
// it) again.
type SharedReader struct {
	mu sync.Mutex
	r  Reader
}

var _ Reader = (*SharedReader)(nil)

// NewSharedReader returns a SharedReader of r. r must not be written while
// it is in use.
func NewSharedReader(r Reader) *SharedReader { return &SharedReader{r: r} }

// Get implements Reader.
func (s *SharedReader) Get(key []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Get(key)
}

// Scan chunk sizes: a scan that stops early (a cursor, a bounded batch of
// timers) copies little; a long one reads larger chunks.
const (
	sharedScanFirst = 16
	sharedScanMax   = 1024
)

// Scan implements Reader.
func (s *SharedReader) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	chunk := sharedScanFirst
	var buf []byte
	var ends []int // in buf: key end, value end, for each pair
	for {
		buf, ends = buf[:0], ends[:0]
		s.mu.Lock()
		err := s.r.Scan(lower, upper, reverse, func(k, v []byte) bool {
			buf = append(buf, k...)
			ends = append(ends, len(buf))
			buf = append(buf, v...)
			ends = append(ends, len(buf))
			return len(ends) < 2*chunk
		})
		s.mu.Unlock()
		if err != nil {
			return err
		}
		start := 0
		var last []byte
		for i := 0; i < len(ends); i += 2 {
			k, v := buf[start:ends[i]:ends[i]], buf[ends[i]:ends[i+1]:ends[i+1]]
			start = ends[i+1]
			if !fn(k, v) {
				return nil
			}
			last = k
		}
		if len(ends) < 2*chunk {
			return nil
		}
		if reverse {
			upper = bytes.Clone(last)
		} else {
			lower = append(bytes.Clone(last), 0)
		}
		chunk = min(2*chunk, sharedScanMax)
	}
}
