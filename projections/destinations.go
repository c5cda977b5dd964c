package projections

import (
	"errors"
	"fmt"
	"slices"

	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Destination is a destination of audience transitions (a webhook or a
// connector), as kept on the log and in the state. The secret (a webhook's
// signing secret; a connector's credentials, a JSON object of its secret
// config fields) is sealed by the edge.
type Destination struct {
	Name         string   `msgpack:"n"`
	Kind         string   `msgpack:"kd,omitempty"` // "" or "webhook": a webhook
	URL          string   `msgpack:"u"`
	Config       []byte   `msgpack:"cf,omitempty"` // a connector's config (JSON) without its credentials
	SecretKey    []byte   `msgpack:"k"`            // data key id that sealed the secret
	SecretSealed []byte   `msgpack:"s"`
	Audiences    []string `msgpack:"a"`
	Channel      string   `msgpack:"c,omitempty"`
	Version      int64    `msgpack:"v"`
	Created      int64    `msgpack:"cr"`
	Updated      int64    `msgpack:"up"`
	// SyncedAt and OutStart (connectors): the log position the first sync
	// sent the members as of, and the AURUM_OUT sequence the consumer
	// starts at; 0 until destination.synced (a put that changes the kind or
	// the audiences resets them: the sync is redone).
	SyncedAt uint64 `msgpack:"sa,omitempty"`
	OutStart uint64 `msgpack:"os,omitempty"`
}

// Destination control kinds.
const (
	ControlDestinationPut    = "destination.put"    // Destination
	ControlDestinationDelete = "destination.delete" // Destination.Name
	// ControlDestinationSynced: Destination.Name, Version, SyncedAt and
	// OutStart; applied only to that version.
	ControlDestinationSynced = "destination.synced"
)

var prefixDestination = []byte("ds/") // ds/<name> → msgpack Destination

func destinationKey(name string) []byte {
	return append(append([]byte(nil), prefixDestination...), name...)
}

// Destinations lists the stored destinations by name.
func Destinations(r store.Reader) ([]Destination, error) {
	out, err := scanValues[Destination](r, prefixDestination, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: list destinations: %w", err)
	}
	return out, nil
}

func (sm *StateMachine) applyDestinationControl(rw store.ReadWriter, c *Control, res *Result) error {
	d := c.Destination
	key := destinationKey(d.Name)
	var prev Destination
	v, err := rw.Get(key)
	exists := err == nil
	if exists {
		if err := msgpack.Unmarshal(v, &prev); err != nil {
			return fmt.Errorf("projections: destination %q: %w", d.Name, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	switch c.Kind {
	case ControlDestinationPut:
		webhook := d.Kind == "" || d.Kind == "webhook"
		if !audienceName.MatchString(d.Name) || (webhook && d.URL == "") || len(d.Audiences) == 0 {
			return nil // invalid on the log: ignored alike by every replay
		}
		d.Version, d.Created, d.Updated = 1, c.Time, c.Time
		d.SyncedAt, d.OutStart = 0, 0
		if exists {
			d.Version, d.Created = prev.Version+1, prev.Created
			if prev.Kind == d.Kind && slices.Equal(prev.Audiences, d.Audiences) {
				d.SyncedAt, d.OutStart = prev.SyncedAt, prev.OutStart
			}
		}
		if err := setMsgpack(rw, key, &d); err != nil {
			return err
		}
	case ControlDestinationSynced:
		if !exists || prev.Version != d.Version || d.SyncedAt == 0 || d.OutStart == 0 {
			return nil // a sync of a version replaced since
		}
		prev.SyncedAt, prev.OutStart = d.SyncedAt, d.OutStart
		if err := setMsgpack(rw, key, &prev); err != nil {
			return err
		}
	case ControlDestinationDelete:
		if !exists {
			return nil
		}
		if err := rw.Delete(key); err != nil {
			return err
		}
	}
	res.Destinations = true
	return nil
}
