package engine

import (
	"fmt"
	"path/filepath"

	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// DigestState opens the projections of a stopped node's data directory and
// returns their digest and applied log position. Two data directories whose
// projections were built from the same log have equal digests.
func DigestState(dataDir string) (digest []byte, applied uint64, err error) {
	db, err := store.Open(filepath.Join(dataDir, "state"), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("engine: digest: %w", err)
	}
	defer db.Close()
	if applied, err = projections.Applied(db); err != nil {
		return nil, 0, err
	}
	digest, err = projections.Digest(db)
	return digest, applied, err
}
