package engine

import (
	"fmt"
	"path/filepath"

	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// StateDigest is the digest of a node's projections at a log position.
type StateDigest struct {
	Applied    uint64   `json:"applied"`
	All        string   `json:"digest"`
	Global     string   `json:"global"`
	Partitions []string `json:"partitions"`
}

func digestOf(r store.Reader) (StateDigest, error) {
	applied, err := projections.Applied(r)
	if err != nil {
		return StateDigest{}, err
	}
	parts, err := projections.CheckPartitions(readOnly{r}, 16)
	if err != nil {
		return StateDigest{}, err
	}
	d, err := projections.DigestParts(r, parts)
	if err != nil {
		return StateDigest{}, err
	}
	out := StateDigest{Applied: applied, All: fmt.Sprintf("%x", d.All), Global: fmt.Sprintf("%x", d.Global)}
	for _, p := range d.Partitions {
		out.Partitions = append(out.Partitions, fmt.Sprintf("%x", p))
	}
	return out, nil
}

// DigestState opens the projections of a stopped node's data directory and
// returns their digests and applied log position. Two data directories whose
// projections were built from the same log have equal digests.
func DigestState(dataDir string) (StateDigest, error) {
	db, err := store.Open(filepath.Join(dataDir, "state"), StateStoreOptions(nil))
	if err != nil {
		return StateDigest{}, fmt.Errorf("engine: digest: %w", err)
	}
	defer db.Close()
	return digestOf(db)
}

// Digest returns the digests of the live projections at their current
// applied position.
func (e *Engine) Digest() (d StateDigest, err error) {
	err = e.read(func(r store.Reader, _ *projections.StateMachine) error {
		d, err = digestOf(r)
		return err
	})
	return d, err
}
