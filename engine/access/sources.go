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

func (t *sourceTable) add(s projections.Source) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byName[s.Name] = s
	var h [32]byte
	copy(h[:], s.KeyHash)
	t.byKey[h] = s.Name
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
	var stored []byte
	if ok {
		stored = e.sources.byName[name].KeyHash
	}
	e.sources.mu.RUnlock()
	if !ok || subtle.ConstantTimeCompare(stored, h[:]) != 1 {
		return "", false
	}
	return name, true
}

// SourceInfo describes a source (never its write key).
type SourceInfo struct {
	Name    string `json:"name"`
	Created int64  `json:"created_ms"`
}

// Sources lists the sources by name.
func (e *Gate) Sources() []SourceInfo {
	e.sources.mu.RLock()
	defer e.sources.mu.RUnlock()
	out := make([]SourceInfo, 0, len(e.sources.byName))
	for _, s := range e.sources.byName {
		out = append(out, SourceInfo{Name: s.Name, Created: s.Created})
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
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("engine: write key: %w", err)
	}
	key := "wk_" + base64.RawURLEncoding.EncodeToString(raw)
	h := sha256.Sum256([]byte(key))
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
