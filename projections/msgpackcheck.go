package projections

import (
	"fmt"

	"github.com/aurumcdp/aurum/internal/wire"
)

// Bounds CheckMsgpack enforces on log entries. An entry the engine writes
// stays far below them: a batch holds at most a few ten thousand records
// (MaxBatchBytes is at most 4 MB) and JSON bodies nest at most 10,000 deep.
const (
	MaxMsgpackElems = 1 << 16
	MaxMsgpackDepth = 10000
)

// CheckMsgpack walks the msgpack encoding in data without decoding it and
// refuses what would make a decoder allocate or recurse without bound
// (wire.CheckMsgpack with MaxMsgpackElems and MaxMsgpackDepth). Hostile
// bytes on the log (anyone who can publish on it) are thus refused as
// corrupt before msgpack.Unmarshal sees them.
func CheckMsgpack(data []byte) error {
	if _, err := wire.CheckMsgpack(data, wire.MsgpackLimits{MaxElems: MaxMsgpackElems, MaxDepth: MaxMsgpackDepth}); err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	return nil
}
