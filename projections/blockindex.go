package projections

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/aurumcdp/aurum/projections/gcr"
	"github.com/aurumcdp/aurum/projections/match"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// The block index of probabilistic matching (ARCHITECTURE.md "Probabilistic
// identity"): per blocking key (match.BlockKeys of a root profile's matching
// traits, hashed by Options.BlockHash so no plaintext value is a key), the
// root profiles that have it. The state machine keeps it after every entry
// for the profiles the entry touched, so it is a function of the log like
// the rest of the state; the matcher reads it to find candidates (at most
// MaxBlockCandidates per key) and never scans all profiles.
//
//	bk/<block hash16><profile16> → empty
//	bp/<profile16>               → msgpack blockEntry: the profile's block hashes and the sum of its matching values

var (
	prefixBlock        = []byte("bk/")
	prefixBlockProfile = []byte("bp/")
)

// MaxBlockCandidates bounds the profiles the matcher reads from one block
// (the first in id order: the oldest profiles). A block larger than that
// (a very common surname) still yields candidates through the other rules.
const MaxBlockCandidates = 200

type blockEntry struct {
	Keys [][]byte `msgpack:"k"`
	Sum  []byte   `msgpack:"s"`
}

func blockProfileKey(p []byte) []byte {
	return append(append([]byte(nil), prefixBlockProfile...), p...)
}
func blockKey(h, p []byte) []byte {
	return append(append(append([]byte(nil), prefixBlock...), h...), p...)
}

// defaultBlockHash is sha256 truncated; the engine passes a keyed hash.
func defaultBlockHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:16]
}

func (sm *StateMachine) blockHash(key string) []byte {
	if sm.opts.BlockHash != nil {
		return sm.opts.BlockHash(key)
	}
	return defaultBlockHash(key)
}

// indexBlocks updates the block index for the profiles cmds touched: a
// profile merged away or erased leaves it; a root whose matching values
// changed is re-indexed and listed in res.MatchProfiles (the matcher's
// work).
func (sm *StateMachine) indexBlocks(rw store.ReadWriter, seq uint64, cmds []PartitionCommand, res *Result) error {
	cfg := sm.Keychain().Config().Probabilistic
	if cfg == nil {
		return nil
	}
	var gone, touched [][]byte
	for i := range cmds {
		c := &cmds[i]
		gone = append(gone, c.Drop...)
		gone = append(gone, c.Erase...)
		for _, a := range c.Absorb {
			touched = append(touched, a.Into)
		}
		for _, a := range c.Add {
			touched = append(touched, a.Profile)
		}
		for _, rb := range c.Rebuild {
			touched = append(touched, rb.Profile.ID)
		}
	}
	slices.SortFunc(gone, bytes.Compare)
	gone = slices.CompactFunc(gone, bytes.Equal)
	for _, p := range gone {
		if err := sm.setBlocks(rw, p, blockEntry{}); err != nil {
			return err
		}
	}
	slices.SortFunc(touched, bytes.Compare)
	touched = slices.CompactFunc(touched, bytes.Equal)
	for _, p := range touched {
		g, err := sm.gcr.Get(rw, p)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		e, err := sm.blockEntryOf(g, cfg)
		if err != nil {
			return err
		}
		changed, err := sm.replaceBlocks(rw, p, e)
		if err != nil {
			return err
		}
		if changed && len(e.Keys) > 0 {
			res.MatchProfiles = append(res.MatchProfiles, p)
		}
	}
	if len(res.MatchProfiles) == 0 {
		return nil
	}
	// The matcher's work, durable with the change (matchqueue.go).
	if ok, err := hasMatchModel(rw); err != nil || !ok {
		return err
	}
	for _, p := range res.MatchProfiles {
		if err := rw.Set(matchQueueKey(seq, p), nil); err != nil {
			return err
		}
	}
	return nil
}

// replaceBlocks stores e for p unless it is what is stored; it reports a
// change of the matching values.
func (sm *StateMachine) replaceBlocks(rw store.ReadWriter, p []byte, e blockEntry) (bool, error) {
	old, _, err := getMsgpack[blockEntry](rw, blockProfileKey(p))
	if err != nil {
		return false, err
	}
	if bytes.Equal(old.Sum, e.Sum) && slices.EqualFunc(old.Keys, e.Keys, bytes.Equal) {
		return false, nil
	}
	return true, sm.setBlocks(rw, p, e)
}

// setBlocks replaces p's entries in the index with e (empty: none).
func (sm *StateMachine) setBlocks(rw store.ReadWriter, p []byte, e blockEntry) error {
	old, ok, err := getMsgpack[blockEntry](rw, blockProfileKey(p))
	if err != nil {
		return err
	}
	if ok {
		for _, h := range old.Keys {
			if err := rw.Delete(blockKey(h, p)); err != nil {
				return err
			}
		}
	}
	if len(e.Keys) == 0 && len(e.Sum) == 0 {
		if !ok {
			return nil
		}
		return rw.Delete(blockProfileKey(p))
	}
	for _, h := range e.Keys {
		if err := rw.Set(blockKey(h, p), nil); err != nil {
			return err
		}
	}
	return setMsgpack(rw, blockProfileKey(p), &e)
}

func recordSum(r match.Record) []byte {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range r {
			if !yield(k) {
				return
			}
		}
	})
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(r[k]), r[k])
	}
	return h.Sum(nil)[:16]
}

// MatchRecordOf returns the matching traits of g (those cfg compares), as
// strings; a trait that does not open is absent.
func (sm *StateMachine) MatchRecordOf(g *gcr.Profile, cfg *match.Config) (match.Record, error) {
	rec := match.Record{}
	if sm.opts.Open == nil {
		return rec, nil
	}
	for name := range cfg.Fields {
		t, ok := g.Traits[name]
		if !ok {
			continue
		}
		pt, err := sm.opts.Open(t.Key, t.Sealed)
		if err != nil {
			if err := openFailure(err); err != nil {
				return nil, fmt.Errorf("projections: trait %q: %w", name, err)
			}
			continue
		}
		var v any
		if CheckMsgpack(pt) != nil || msgpack.Unmarshal(pt, &v) != nil {
			continue
		}
		if s, ok := traitString(v); ok {
			rec[name] = s
		}
	}
	return rec, nil
}

func traitString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, x != ""
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case int8, int16, int32, uint8, uint16, uint32:
		return fmt.Sprint(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// BlockCandidates returns the root profiles sharing a block with rec under
// cfg (at most MaxBlockCandidates per block), sorted, without exclude.
func (sm *StateMachine) BlockCandidates(r store.Reader, cfg *match.Config, rec match.Record, exclude []byte) ([][]byte, error) {
	var out [][]byte
	for _, k := range match.BlockKeys(*cfg, rec) {
		prefix := append(append([]byte(nil), prefixBlock...), sm.blockHash(k)...)
		n := 0
		if err := r.Scan(prefix, prefixEnd(prefix), false, func(key, _ []byte) bool {
			p := bytes.Clone(key[len(prefix):])
			if !bytes.Equal(p, exclude) {
				out = append(out, p)
			}
			n++
			return n < MaxBlockCandidates
		}); err != nil {
			return nil, fmt.Errorf("projections: block candidates: %w", err)
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return slices.CompactFunc(out, bytes.Equal), nil
}

// BlockProfiles returns up to n profiles of the block index with ids after
// after (nil: from the start), in id order.
func BlockProfiles(r store.Reader, after []byte, n int) ([][]byte, error) {
	lower := prefixBlockProfile
	if after != nil {
		lower = append(blockProfileKey(after), 0)
	}
	var out [][]byte
	err := r.Scan(lower, prefixEnd(prefixBlockProfile), false, func(k, _ []byte) bool {
		out = append(out, bytes.Clone(k[len(prefixBlockProfile):]))
		return len(out) < n
	})
	if err != nil {
		return nil, fmt.Errorf("projections: block profiles: %w", err)
	}
	return out, nil
}
