package query

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/store"
	"github.com/oklog/ulid/v2"
)

// AudienceInfo is an audience definition with its current size.
type AudienceInfo struct {
	audience.Definition
	Size int64 `json:"size"`
}

// audienceJSON is the API's form of an AudienceInfo: times in RFC 3339.
type audienceJSON struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Rule        string    `json:"rule"`
	Version     int64     `json:"version"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	Size        int64     `json:"size"`
}

// MarshalJSON writes the audience with RFC 3339 times (the stored
// definition keeps Unix milliseconds).
func (a AudienceInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(audienceJSON{Name: a.Name, Description: a.Description, Rule: a.Rule, Version: a.Version,
		Created: time.UnixMilli(a.Created).UTC(), Updated: time.UnixMilli(a.Updated).UTC(), Size: a.Size})
}

// UnmarshalJSON reads the form MarshalJSON writes.
func (a *AudienceInfo) UnmarshalJSON(data []byte) error {
	var j audienceJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*a = AudienceInfo{Definition: audience.Definition{Name: j.Name, Description: j.Description, Rule: j.Rule, Version: j.Version,
		Created: j.Created.UnixMilli(), Updated: j.Updated.UnixMilli()}, Size: j.Size}
	return nil
}

// Audiences lists the audiences with their sizes.
func (e *Reader) Audiences() (out []AudienceInfo, err error) {
	err = e.read(func(snap store.Reader, sm *projections.StateMachine) error {
		defs, err := projections.Audiences(snap)
		if err != nil {
			return err
		}
		out = make([]AudienceInfo, 0, len(defs))
		for _, d := range defs {
			n, err := sm.AudienceSize(snap, d.Name)
			if err != nil {
				return err
			}
			out = append(out, AudienceInfo{Definition: d, Size: n})
		}
		return nil
	})
	return out, err
}

// Audience returns one audience with its size.
func (e *Reader) Audience(name string) (AudienceInfo, error) {
	all, err := e.Audiences()
	if err != nil {
		return AudienceInfo{}, err
	}
	for _, a := range all {
		if a.Name == name {
			return a, nil
		}
	}
	return AudienceInfo{}, fmt.Errorf("%w: audience %q", base.ErrNotFound, name)
}

// Member is one member of an audience.
type Member struct {
	ProfileID string    `json:"profile_id"`
	Since     time.Time `json:"since"`
	Version   int64     `json:"rule_version"`
}

// AudienceMembers lists up to limit members after cursor ("" = from the
// start); next is the cursor of the following page ("" at the end).
func (e *Reader) AudienceMembers(name, cursor string, limit int) (members []Member, next string, err error) {
	if limit < 1 || limit > 10000 {
		return nil, "", fmt.Errorf("%w: limit must be in [1, 10000]", base.ErrInvalid)
	}
	if _, err := e.Audience(name); err != nil {
		return nil, "", err
	}
	var after []byte
	if cursor != "" {
		u, err := ulid.ParseStrict(cursor)
		if err != nil {
			return nil, "", fmt.Errorf("%w: cursor %q", base.ErrInvalid, cursor)
		}
		after = u[:]
	}
	var ms []projections.Membership
	var ids [][]byte
	err = e.read(func(snap store.Reader, sm *projections.StateMachine) error {
		ms, ids, err = sm.AudienceMembers(snap, name, after, limit)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	members = make([]Member, len(ms))
	for i, m := range ms {
		members[i] = Member{ProfileID: base.ULIDString(ids[i]), Since: time.UnixMilli(m.Since).UTC(), Version: m.Version}
	}
	if len(ms) == limit {
		next = base.ULIDString(ids[len(ids)-1])
	}
	return members, next, nil
}

// PreviewResult is the size an audience rule would have now, with a sample.
type PreviewResult struct {
	Size        int64    `json:"size"`
	Exact       bool     `json:"exact"`            // false: Size is estimated from a sample
	Margin      int64    `json:"margin,omitempty"` // 95 % confidence half-width of an estimate
	Profiles    int64    `json:"profiles"`         // profiles in total
	Evaluated   int64    `json:"evaluated"`        // profiles evaluated
	Sample      []string `json:"sample"`           // profile ids of members
	EvaluatedAt string   `json:"evaluated_at"`     // the log clock
	Took        string   `json:"took"`
}

// PreviewExactLimit is how many profiles a preview evaluates exactly; past
// it, it evaluates an evenly spaced sample of that many and estimates.
const PreviewExactLimit = 50_000

// Preview evaluates rule as of the current log time without creating an
// audience (nothing goes on the log): over every profile when there are at
// most PreviewExactLimit or exact is set, else over an evenly spaced sample
// of that many, with the size estimated and its 95 % margin.
func (e *Reader) Preview(rule string, sample int, exact bool) (PreviewResult, error) {
	if sample < 0 || sample > 1000 {
		return PreviewResult{}, fmt.Errorf("%w: sample must be in [0, 1000]", base.ErrInvalid)
	}
	d := audience.Definition{Name: "preview", Rule: rule, Version: 1}
	set, err := audience.Compile([]audience.Definition{d})
	if err != nil {
		return PreviewResult{}, fmt.Errorf("%w: %w", base.ErrInvalid, err)
	}
	start := time.Now()
	var now int64
	var pr projections.PreviewResult
	limit := PreviewExactLimit
	if exact {
		limit = 0
	}
	err = e.read(func(snap store.Reader, sm *projections.StateMachine) error {
		if now, err = projections.LogClock(snap); err != nil {
			return err
		}
		pr, err = sm.Preview(snap, set, now, sample, limit)
		return err
	})
	if err != nil {
		return PreviewResult{}, err
	}
	res := PreviewResult{Size: pr.Size, Exact: pr.Exact, Margin: pr.Margin, Profiles: pr.Profiles, Evaluated: pr.Evaluated,
		Sample: make([]string, len(pr.Sample)), EvaluatedAt: time.UnixMilli(now).UTC().Format(time.RFC3339Nano),
		Took: time.Since(start).Round(time.Millisecond).String()}
	for i, id := range pr.Sample {
		res.Sample[i] = base.ULIDString(id)
	}
	return res, nil
}
