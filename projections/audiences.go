package projections

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Output subjects of audience transitions: aurum.audience.<name>.entered /
// aurum.audience.<name>.exited.
const SubjectAudiencePrefix = "aurum.audience."

var audienceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidateAudience checks a definition before it goes on the log: a valid
// name (it is a subject token) and a rule that compiles.
func ValidateAudience(d audience.Definition) error {
	if !audienceName.MatchString(d.Name) {
		return fmt.Errorf("name %q: want 1-64 characters of a-z, 0-9, _ and -, starting with a letter or digit", d.Name)
	}
	if d.Name == "preview" {
		return errors.New(`name "preview" is reserved (POST /v1/audiences/preview)`)
	}
	if len(d.Description) > 4096 {
		return errors.New("description: longer than 4096 bytes")
	}
	if _, err := rules.Compile(d.Rule); err != nil {
		return err
	}
	return nil
}

func audienceKey(name string) []byte { return append(append([]byte(nil), prefixAudience...), name...) }

// Audiences lists the stored audience definitions by name.
func Audiences(r store.Reader) ([]audience.Definition, error) {
	out, err := scanValues[audience.Definition](r, prefixAudience, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: list audiences: %w", err)
	}
	return out, nil
}

// AudienceSet returns the compiled audiences in effect.
func (sm *StateMachine) AudienceSet() *audience.Set { return sm.audiences.Load() }

func (sm *StateMachine) loadAudiences(r store.Reader) error {
	defs, err := Audiences(r)
	if err != nil {
		return err
	}
	set, err := audience.Compile(defs)
	if err != nil {
		return fmt.Errorf("projections: load audiences: %w", err)
	}
	sm.audiences.Store(set)
	return nil
}

// applyAudienceControl creates, replaces or deletes an audience and bumps
// the generation, which makes every partition re-evaluate all its profiles
// (the backfill), a bounded number per entry.
func (sm *StateMachine) applyAudienceControl(rw store.ReadWriter, c *Control, res *Result) error {
	d := c.Audience
	key := audienceKey(d.Name)
	var prev audience.Definition
	v, err := rw.Get(key)
	exists := err == nil
	if exists {
		if err := msgpack.Unmarshal(v, &prev); err != nil {
			return fmt.Errorf("projections: audience %q: %w", d.Name, err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	switch c.Kind {
	case ControlAudiencePut:
		if ValidateAudience(d) != nil {
			return nil // invalid on the log: ignored alike by every replay
		}
		d.Version, d.Created, d.Updated = 1, c.Time, c.Time
		if exists {
			if prev.Rule == d.Rule && prev.Description == d.Description {
				return nil
			}
			d.Version, d.Created = prev.Version+1, prev.Created
		}
		if err := setMsgpack(rw, key, &d); err != nil {
			return err
		}
	case ControlAudienceDelete:
		if !exists {
			return nil
		}
		if err := rw.Delete(key); err != nil {
			return err
		}
	}
	defs, err := Audiences(rw)
	if err != nil {
		return err
	}
	set, err := audience.Compile(defs)
	if err != nil {
		return fmt.Errorf("projections: audiences: %w", err)
	}
	gen, err := readUint64(rw, keyAudienceGen)
	if err != nil {
		return err
	}
	if err := setUint64(rw, keyAudienceGen, gen+1); err != nil {
		return err
	}
	sm.audiences.Store(set)
	res.Audiences = true
	return nil
}

// LogClock returns the state machine's clock: the latest log time applied.
func LogClock(r store.Reader) (int64, error) {
	v, err := readUint64(r, keyNow)
	return int64(v), err
}
