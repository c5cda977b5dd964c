package projections

import (
	"errors"
	"fmt"

	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Destination is a webhook destination of audience transitions, as kept on
// the log and in the state. The secret is sealed by the edge.
type Destination struct {
	Name         string   `msgpack:"n"`
	URL          string   `msgpack:"u"`
	SecretKey    []byte   `msgpack:"k"` // data key id that sealed the secret
	SecretSealed []byte   `msgpack:"s"`
	Audiences    []string `msgpack:"a"`
	Channel      string   `msgpack:"c,omitempty"`
	Version      int64    `msgpack:"v"`
	Created      int64    `msgpack:"cr"`
	Updated      int64    `msgpack:"up"`
}

// Destination control kinds.
const (
	ControlDestinationPut    = "destination.put"    // Destination
	ControlDestinationDelete = "destination.delete" // Destination.Name
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
		if !audienceName.MatchString(d.Name) || d.URL == "" || len(d.Audiences) == 0 {
			return nil // invalid on the log: ignored alike by every replay
		}
		d.Version, d.Created, d.Updated = 1, c.Time, c.Time
		if exists {
			d.Version, d.Created = prev.Version+1, prev.Created
		}
		if err := setMsgpack(rw, key, &d); err != nil {
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
