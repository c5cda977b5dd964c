package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/projections/audience"
	"github.com/aurumcdp/aurum/rules"
	"github.com/aurumcdp/aurum/store"
)

// AudienceRefError refuses an audience change that would leave an
// in_audience naming no audience, or audiences naming each other in a
// cycle: a rule naming audiences that do not exist (Unknown) or making a
// cycle (Cycle: the path, first and last the audience put), or deleting an
// audience that other rules name (NamedBy) or destinations deliver
// (UsedBy); and a destination naming audiences that do not exist
// (Destination set, Unknown). It is base.ErrInvalid.
type AudienceRefError struct {
	Audience    string
	Unknown     []string
	Cycle       []string
	NamedBy     []string
	UsedBy      []string // destinations
	Destination string   // the destination put, naming Unknown
}

func (e *AudienceRefError) Error() string { return "engine: " + e.Reason() }

// Reason says what is wrong, for the user (Error without the package).
func (e *AudienceRefError) Reason() string {
	switch {
	case e.Destination != "" && len(e.Unknown) == 1:
		return fmt.Sprintf("destination %q names audience %q, which does not exist", e.Destination, e.Unknown[0])
	case e.Destination != "":
		return fmt.Sprintf("destination %q names audiences %s, which do not exist", e.Destination, quoteList(e.Unknown))
	case len(e.UsedBy) == 1:
		return fmt.Sprintf("audience %q is delivered by destination %q", e.Audience, e.UsedBy[0])
	case len(e.UsedBy) > 1:
		return fmt.Sprintf("audience %q is delivered by destinations %s", e.Audience, quoteList(e.UsedBy))
	case len(e.Unknown) == 1:
		return fmt.Sprintf("in_audience names audience %q, which does not exist", e.Unknown[0])
	case len(e.Unknown) > 1:
		return fmt.Sprintf("in_audience names audiences %s, which do not exist", quoteList(e.Unknown))
	case len(e.Cycle) == 2:
		return fmt.Sprintf("in_audience names the audience itself (%q)", e.Audience)
	case len(e.Cycle) > 0:
		return "in_audience makes a cycle of audiences: " + strings.Join(e.Cycle, " → ")
	case len(e.NamedBy) == 1:
		return fmt.Sprintf("audience %q is named by audience %s (in_audience)", e.Audience, quoteList(e.NamedBy))
	default:
		return fmt.Sprintf("audience %q is named by audiences %s (in_audience)", e.Audience, quoteList(e.NamedBy))
	}
}

// Unwrap makes the error base.ErrInvalid.
func (e *AudienceRefError) Unwrap() error { return base.ErrInvalid }

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// audienceDeps returns the audiences each stored audience's rule names.
func (e *Engine) audienceDeps() (map[string][]string, error) {
	all, err := e.reader.Audiences()
	if err != nil {
		return nil, err
	}
	deps := make(map[string][]string, len(all))
	for _, a := range all {
		r, err := rules.Compile(a.Rule)
		if err != nil { // stored rules compiled when they were put
			return nil, fmt.Errorf("engine: audience %q: %w", a.Name, err)
		}
		deps[a.Name] = r.Audiences()
	}
	return deps, nil
}

// checkAudienceRefs refuses d when its rule names an audience that does
// not exist or closes a cycle (d itself included).
func (e *Engine) checkAudienceRefs(d audience.Definition) error {
	r, err := rules.Compile(d.Rule)
	if err != nil {
		return err
	}
	if len(r.Audiences()) == 0 {
		return nil
	}
	deps, err := e.audienceDeps()
	if err != nil {
		return err
	}
	deps[d.Name] = r.Audiences()
	var unknown []string
	for _, n := range r.Audiences() {
		if _, ok := deps[n]; !ok {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		return &AudienceRefError{Audience: d.Name, Unknown: unknown}
	}
	// A path from d back to d is a cycle (depth-first, names in order).
	seen := map[string]bool{}
	var path []string
	var visit func(n string) bool
	visit = func(n string) bool {
		path = append(path, n)
		for _, m := range deps[n] {
			if m == d.Name {
				path = append(path, m)
				return true
			}
			if !seen[m] {
				seen[m] = true
				if visit(m) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	if visit(d.Name) {
		return &AudienceRefError{Audience: d.Name, Cycle: path}
	}
	return nil
}

// checkAudienceUnused refuses deleting name while other rules name it or
// destinations deliver it.
func (e *Engine) checkAudienceUnused(name string) error {
	deps, err := e.audienceDeps()
	if err != nil {
		return err
	}
	var ds []projections.Destination
	if err := e.read(func(r store.Reader, _ *projections.StateMachine) (err error) {
		ds, err = projections.Destinations(r)
		return err
	}); err != nil {
		return err
	}
	var used []string
	for _, d := range ds {
		if slices.Contains(d.Audiences, name) {
			used = append(used, d.Name)
		}
	}
	if len(used) > 0 {
		slices.Sort(used)
		return &AudienceRefError{Audience: name, UsedBy: used}
	}
	var by []string
	for a, ds := range deps {
		if a != name && slices.Contains(ds, name) {
			by = append(by, a)
		}
	}
	if len(by) > 0 {
		slices.Sort(by)
		return &AudienceRefError{Audience: name, NamedBy: by}
	}
	return nil
}

// checkDestinationAudiences refuses a destination naming audiences that
// do not exist.
func (e *Engine) checkDestinationAudiences(name string, audiences []string) error {
	var unknown []string
	for _, a := range audiences {
		if _, err := e.reader.Audience(a); errors.Is(err, base.ErrNotFound) {
			if !slices.Contains(unknown, a) {
				unknown = append(unknown, a)
			}
		} else if err != nil {
			return err
		}
	}
	if len(unknown) > 0 {
		return &AudienceRefError{Destination: name, Unknown: unknown}
	}
	return nil
}
