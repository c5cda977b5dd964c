package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// ErrSourceExists is returned when creating a source whose name is taken.
var ErrSourceExists = errors.New("engine: source exists")

// sourceTable is the in-memory view of the sources in the state store, kept
// current by the apply loop.
type sourceTable struct {
	mu     sync.RWMutex
	byName map[string]projections.Source
	byKey  map[[32]byte]string
}

func loadSources(r store.Reader) (*sourceTable, error) {
	t := &sourceTable{byName: map[string]projections.Source{}, byKey: map[[32]byte]string{}}
	list, err := projections.Sources(r)
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		t.add(s)
	}
	return t, nil
}

// add puts s in the table (replacing the source of its name and its
// keys), or removes it when s.Deleted.
func (t *sourceTable) add(s projections.Source) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.byName[s.Name]; ok {
		for _, kh := range [][]byte{old.KeyHash, old.OldKeyHash} {
			var h [32]byte
			copy(h[:], kh)
			if t.byKey[h] == s.Name {
				delete(t.byKey, h)
			}
		}
		delete(t.byName, s.Name)
	}
	if s.Deleted {
		return
	}
	t.byName[s.Name] = s
	for _, kh := range [][]byte{s.KeyHash, s.OldKeyHash} {
		if len(kh) == sha256.Size {
			var h [32]byte
			copy(h[:], kh)
			t.byKey[h] = s.Name
		}
	}
}

func (t *sourceTable) exists(name string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.byName[name]
	return ok
}

func (t *sourceTable) get(name string) (projections.Source, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s, ok := t.byName[name]
	return s, ok
}

// SourceForKey returns the source whose write key is key.
func (e *Gate) SourceForKey(key string) (string, bool) {
	if key == "" {
		return "", false
	}
	h := sha256.Sum256([]byte(key))
	e.sources.mu.RLock()
	name, ok := e.sources.byKey[h]
	var src projections.Source
	if ok {
		src = e.sources.byName[name]
	}
	e.sources.mu.RUnlock()
	switch {
	case !ok:
		return "", false
	case subtle.ConstantTimeCompare(src.KeyHash, h[:]) == 1:
		return name, true
	case subtle.ConstantTimeCompare(src.OldKeyHash, h[:]) == 1 && e.opts.Now().UnixMilli() < src.OldKeyUntil:
		return name, true // the previous key, within its grace period
	}
	return "", false
}

// SourceInfo describes a source (never its write key).
type SourceInfo struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// OldKeyValidUntil is when the write key before the last rotation
	// stops working (absent when there is none).
	OldKeyValidUntil time.Time `json:"old_key_valid_until,omitzero"`
}

// Sources lists the sources by name.
func (e *Gate) Sources() []SourceInfo {
	e.sources.mu.RLock()
	defer e.sources.mu.RUnlock()
	out := make([]SourceInfo, 0, len(e.sources.byName))
	now := e.opts.Now().UnixMilli()
	for _, s := range e.sources.byName {
		info := SourceInfo{Name: s.Name, Created: time.UnixMilli(s.Created).UTC()}
		if s.OldKeyHash != nil && now < s.OldKeyUntil {
			info.OldKeyValidUntil = time.UnixMilli(s.OldKeyUntil).UTC()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// CreateSource creates a source through the log and returns its write key,
// which is shown only here: the engine keeps its hash.
func (e *Gate) CreateSource(ctx context.Context, name string) (string, error) {
	if err := event.ValidSourceName(name); err != nil {
		return "", fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	if e.sources.exists(name) {
		return "", fmt.Errorf("%w: %q", ErrSourceExists, name)
	}
	key, h, err := newWriteKey()
	if err != nil {
		return "", err
	}
	c := projections.Control{Kind: projections.ControlSourceCreate, Time: e.opts.Now().UnixMilli(),
		Source: projections.Source{Name: name, KeyHash: h[:], Created: e.opts.Now().UnixMilli()}}
	seq, err := e.control.AppendControl(ctx, c)
	if err != nil {
		return "", err
	}
	if err := e.applied.WaitApplied(ctx, seq); err != nil {
		return "", err
	}
	if s, ok := e.sources.get(name); !ok || subtle.ConstantTimeCompare(s.KeyHash, h[:]) != 1 {
		return "", fmt.Errorf("%w: %q", ErrSourceExists, name) // a concurrent create won
	}
	return key, nil
}

// newWriteKey returns a new write key and its hash.
func newWriteKey() (string, [32]byte, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", [32]byte{}, fmt.Errorf("engine: write key: %w", err)
	}
	key := "wk_" + base64.RawURLEncoding.EncodeToString(raw)
	return key, sha256.Sum256([]byte(key)), nil
}

// MaxKeyGrace bounds how long a rotated-out write key keeps working.
const MaxKeyGrace = 30 * 24 * time.Hour

// RotateSourceKey gives a source a new write key, returned only here, and
// keeps the current one working for grace (0: it stops at once) so that
// producers can switch; until is when it stops.
func (e *Gate) RotateSourceKey(ctx context.Context, name string, grace time.Duration) (key string, until time.Time, err error) {
	if grace < 0 || grace > MaxKeyGrace {
		return "", time.Time{}, fmt.Errorf("%w: grace must be in [0, %s], got %s", base.ErrInvalid, MaxKeyGrace, grace)
	}
	if !e.sources.exists(name) {
		return "", time.Time{}, fmt.Errorf("%w: source %q", base.ErrNotFound, name)
	}
	key, h, err := newWriteKey()
	if err != nil {
		return "", time.Time{}, err
	}
	now := e.opts.Now()
	until = now.Add(grace)
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlSourceRotate, Time: now.UnixMilli(),
		Source: projections.Source{Name: name, KeyHash: h[:], OldKeyUntil: until.UnixMilli()}})
	if err != nil {
		return "", time.Time{}, err
	}
	if err := e.applied.WaitApplied(ctx, seq); err != nil {
		return "", time.Time{}, err
	}
	if s, ok := e.sources.get(name); !ok || subtle.ConstantTimeCompare(s.KeyHash, h[:]) != 1 {
		return "", time.Time{}, fmt.Errorf("%w: source %q (deleted or rotated concurrently)", base.ErrNotFound, name)
	}
	return key, until.UTC(), nil
}

// DeleteSource deletes a source: its write keys stop working at once. Its
// events stay on the log and in the profiles; a source of the same name
// can be created again (with a new key).
func (e *Gate) DeleteSource(ctx context.Context, name string) error {
	if !e.sources.exists(name) {
		return fmt.Errorf("%w: source %q", base.ErrNotFound, name)
	}
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlSourceDelete, Time: e.opts.Now().UnixMilli(),
		Source: projections.Source{Name: name}})
	if err != nil {
		return err
	}
	return e.applied.WaitApplied(ctx, seq)
}

// SourceExists reports whether the source exists.
func (e *Gate) SourceExists(name string) bool { return e.sources.exists(name) }

// AddSources adds sources the apply loop applied to the table.
func (e *Gate) AddSources(list []projections.Source) {
	for _, s := range list {
		e.sources.add(s)
	}
}

// EnsureSource creates the source name unless it exists (a concurrent
// create counts as existing).
func (e *Gate) EnsureSource(ctx context.Context, name string) error {
	if e.sources.exists(name) {
		return nil
	}
	if _, err := e.CreateSource(ctx, name); err != nil && !errors.Is(err, ErrSourceExists) {
		return err
	}
	return nil
}
