package query

import (
	"time"

	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/store"
)

// Seen reports, per messageId, whether the dedup table remembers it for
// source at time at: an event carrying it, appended now, would be dropped
// as a duplicate (imports count these apart from the new rows).
func (e *Reader) Seen(source string, messageIDs []string, at time.Time) ([]bool, error) {
	out := make([]bool, len(messageIDs))
	err := e.read(func(r store.Reader, _ *projections.StateMachine) error {
		for i, id := range messageIDs {
			seen, err := projections.Seen(r, source, id, at.UnixMilli())
			if err != nil {
				return err
			}
			out[i] = seen
		}
		return nil
	})
	return out, err
}
