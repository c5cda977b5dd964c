package identity

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/store"
)

// harness runs data-driven commands against a keychain on a Mem store. It
// hashes plaintext values like the edge would and prints them back by value;
// profile ids print as P1, P2... in order of first appearance.
//
// Commands:
//
//	config                       (input: YAML) reset with this configuration
//	event <name> t=<ms> <type:value|~type:value>...   (~ = weak)
//	lookup <type:value>          (profile_id:P1 looks a profile id up)
//	root <P>
//	ids <P>
//	merged <P>
//	profiles                     every root: its identifiers and merged ids
//	blocked <type> <value>       (value may be a Go-quoted string)
//	rank <type>...               types in priority order with their rank
type harness struct {
	t      testing.TB
	k      *Keychain
	st     *store.Mem
	values map[string]string // type+hash → "type:value"
	names  map[string]string // profile id → P<n>
	byName map[string][]byte // P<n> → profile id
}

func newHarness(t testing.TB, cfg Config) *harness {
	h := &harness{t: t}
	h.reset(cfg)
	return h
}

func (h *harness) reset(cfg Config) {
	h.k = New(cfg)
	h.st = store.NewMem()
	h.values = map[string]string{}
	h.names = map[string]string{}
	h.byName = map[string][]byte{}
}

func (h *harness) name(p []byte) string {
	if n, ok := h.names[string(p)]; ok {
		return n
	}
	n := fmt.Sprintf("P%d", len(h.names)+1)
	h.names[string(p)] = n
	h.byName[n] = slices.Clone(p)
	return n
}

func (h *harness) profile(n string) ([]byte, error) {
	p, ok := h.byName[n]
	if !ok {
		return nil, fmt.Errorf("unknown profile %s", n)
	}
	return p, nil
}

func (h *harness) value(typ string, hash []byte) string {
	if v, ok := h.values[typ+string(hash)]; ok {
		return v
	}
	return fmt.Sprintf("%s:%x", typ, hash)
}

// parseID parses [~]type:value.
func (h *harness) parseID(s string) (event.IDRef, error) {
	weak := strings.HasPrefix(s, "~")
	s = strings.TrimPrefix(s, "~")
	typ, val, ok := strings.Cut(s, ":")
	if !ok {
		return event.IDRef{}, fmt.Errorf("bad identifier %q", s)
	}
	hash := testHash(typ, val)
	h.values[typ+string(hash)] = s
	return event.IDRef{Type: typ, Hash: hash, Weak: weak}, nil
}

func (h *harness) run(c ddCase) (string, error) {
	switch c.cmd {
	case "config":
		cfg, err := parseConfig([]byte(c.input))
		if err != nil {
			return "error: " + err.Error(), nil
		}
		h.reset(cfg)
		return "ok", nil

	case "event":
		if len(c.args) < 2 || !strings.HasPrefix(c.args[1], "t=") {
			return "", errors.New("usage: event <name> t=<ms> ids...")
		}
		ts, err := strconv.ParseInt(strings.TrimPrefix(c.args[1], "t="), 10, 64)
		if err != nil {
			return "", err
		}
		in := Input{EventID: testEventID(c.args[0]), Time: ts}
		for _, a := range c.args[2:] {
			id, err := h.parseID(a)
			if err != nil {
				return "", err
			}
			in.IDs = append(in.IDs, id)
		}
		res, err := h.k.Resolve(h.st, in)
		if err != nil {
			return "error: " + err.Error(), nil
		}
		if err := h.k.Check(h.st); err != nil {
			return "", fmt.Errorf("after %s: %w", c.args[0], err)
		}
		return h.formatResult(c.args[0], in, res), nil

	case "lookup":
		if len(c.args) != 1 {
			return "", errors.New("usage: lookup type:value")
		}
		typ, val, _ := strings.Cut(c.args[0], ":")
		var p []byte
		var err error
		if typ == event.ProfileID {
			var q []byte
			if q, err = h.profile(val); err != nil {
				return "", err
			}
			p, err = h.k.Lookup(h.st, typ, q)
		} else {
			p, err = h.k.Lookup(h.st, typ, testHash(typ, val))
		}
		return h.formatProfile(p, err), nil

	case "root", "ids", "merged":
		if len(c.args) != 1 {
			return "", fmt.Errorf("usage: %s P<n>", c.cmd)
		}
		p, err := h.profile(c.args[0])
		if err != nil {
			return "", err
		}
		switch c.cmd {
		case "root":
			r, err := h.k.Root(h.st, p)
			return h.formatProfile(r, err), nil
		case "ids":
			ids, err := h.k.Identifiers(h.st, p)
			if err != nil {
				return "error: " + err.Error(), nil
			}
			var s []string
			for _, id := range ids {
				s = append(s, h.value(id.Type, id.Hash))
			}
			return strings.Join(s, " "), nil
		default:
			ms, err := h.k.MergedFrom(h.st, p)
			if err != nil {
				return "error: " + err.Error(), nil
			}
			if len(ms) == 0 {
				return "none", nil
			}
			var s []string
			for _, m := range ms {
				s = append(s, h.name(m))
			}
			return strings.Join(s, " "), nil
		}

	case "profiles":
		return h.profiles()

	case "blocked":
		if len(c.args) < 2 {
			return "", errors.New("usage: blocked <type> <value>")
		}
		v := strings.Join(c.args[1:], " ")
		if strings.HasPrefix(v, `"`) {
			var err error
			if v, err = strconv.Unquote(v); err != nil {
				return "", err
			}
		}
		if h.k.Config().IsBlocked(c.args[0], v) {
			return "blocked", nil
		}
		return "allowed", nil

	case "rank":
		types := slices.Clone(c.args)
		cfg := h.k.Config()
		slices.SortStableFunc(types, cfg.Compare)
		var s []string
		for _, typ := range types {
			s = append(s, fmt.Sprintf("%s=%d", typ, cfg.Rank(typ)))
		}
		return strings.Join(s, " "), nil
	}
	return "", fmt.Errorf("unknown command %q", c.cmd)
}

func (h *harness) formatProfile(p []byte, err error) string {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "not found"
	case err != nil:
		return "error: " + err.Error()
	}
	return h.name(p)
}

func (h *harness) formatResult(ev string, in Input, res Result) string {
	var b strings.Builder
	b.WriteString(h.name(res.Profile))
	if res.Created {
		b.WriteString(" created")
	}
	b.WriteString(" owns")
	for _, i := range res.Owned {
		b.WriteString(" " + h.value(in.IDs[i].Type, in.IDs[i].Hash))
	}
	for _, m := range res.Merges {
		if !bytes.Equal(m.EventID, in.EventID) {
			h.t.Errorf("merge event id %x, want %x", m.EventID, in.EventID)
		}
		fmt.Fprintf(&b, "\nmerge %s -> %s by %s (%s)", h.name(m.From), h.name(m.Into), h.value(m.Type, m.Hash), ev)
	}
	for _, r := range res.Refused {
		fmt.Fprintf(&b, "\nrefused %s: %s", h.value(in.IDs[r.Index].Type, in.IDs[r.Index].Hash), r.Reason)
	}
	return b.String()
}

// profiles prints every root profile, by name, with its identifiers and the
// profiles merged into it.
func (h *harness) profiles() (string, error) {
	roots, err := check(h.st)
	if err != nil {
		return "", err
	}
	// Name unnamed roots in id order so the output is deterministic.
	var lines []string
	for _, p := range sortedKeys(roots) {
		n := roots[p]
		var s []string
		for _, id := range n.IDs {
			s = append(s, h.value(id.Type, id.Hash))
		}
		line := h.name([]byte(p)) + ": " + strings.Join(s, " ")
		if len(n.MergedFrom) > 0 {
			var ms []string
			for _, m := range n.MergedFrom {
				ms = append(ms, h.name(m))
			}
			line += " (merged " + strings.Join(ms, " ") + ")"
		}
		lines = append(lines, line)
	}
	slices.SortFunc(lines, func(a, b string) int {
		na, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(a, ":", 2)[0], "P"))
		nb, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(b, ":", 2)[0], "P"))
		return na - nb
	})
	return strings.Join(lines, "\n"), nil
}
