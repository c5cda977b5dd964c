package identity

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/aurumcdp/aurum/event"
	"github.com/aurumcdp/aurum/projections/match"
	"go.yaml.in/yaml/v3"
)

// Config is the identity resolution configuration, read from a YAML file with
// LoadConfig. The zero Config is valid (no priorities listed: every type ranks
// alphabetically with anonymous_id last; no limits; nothing blocked), but
// DefaultConfig is what callers normally start from.
type Config struct {
	// Priority lists identifier types, highest priority first. Unlisted types
	// rank after the listed ones, alphabetically among themselves, and
	// anonymous_id ranks last unless it is listed.
	Priority []string `yaml:"priority"`
	// Limits is the maximum number of identifiers of a type one profile may
	// own. An absent type or 0 means unlimited.
	Limits map[string]int `yaml:"limits"`
	// Blocked lists values dropped for every type (compared trimmed and
	// case-insensitively).
	Blocked []string `yaml:"blocked"`
	// BlockedByType lists values dropped for one type only.
	BlockedByType map[string][]string `yaml:"blocked_by_type"`
	// Probabilistic, when set, turns probabilistic matching on (issue #13,
	// docs/identity.md): the traits compared, the blocking rules and the
	// thresholds. Absent: deterministic matching only.
	Probabilistic *match.Config `yaml:"probabilistic" json:",omitempty"`
}

// DefaultConfig returns the default configuration: priority user_id, email,
// phone (then the rest alphabetically, anonymous_id last), at most one user_id
// per profile, and the usual placeholder values blocked.
func DefaultConfig() Config {
	return Config{
		Priority: []string{event.UserID, event.Email, event.Phone},
		Limits:   map[string]int{event.UserID: 1},
		Blocked: []string{
			"", "null", "nil", "none", "undefined", "anonymous", "unknown",
			"0", "-1", "n/a", "na", "test", "[object object]",
			"00000000-0000-0000-0000-000000000000",
		},
	}
}

// LoadConfig reads a YAML configuration file. Fields missing from the file
// take their DefaultConfig value (a field that is present replaces the default
// entirely: `limits: {}` means no limits). Unknown keys and invalid values are
// errors.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("identity: load config: %w", err)
	}
	cfg, err := parseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("identity: load config %s: %w", path, err)
	}
	return cfg, nil
}

// parseConfig decodes and validates a YAML configuration.
func parseConfig(data []byte) (Config, error) {
	var raw Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	def := DefaultConfig()
	if raw.Priority == nil {
		raw.Priority = def.Priority
	}
	if raw.Limits == nil {
		raw.Limits = def.Limits
	}
	if raw.Blocked == nil {
		raw.Blocked = def.Blocked
	}
	if err := raw.Validate(); err != nil {
		return Config{}, err
	}
	return raw, nil
}

// maxTypeLen bounds identifier type names.
const maxTypeLen = 64

// validType reports whether typ is a valid identifier type name: a lower-case
// letter followed by up to 63 lower-case letters, digits or underscores.
func validType(typ string) bool {
	if len(typ) == 0 || len(typ) > maxTypeLen || typ[0] < 'a' || typ[0] > 'z' {
		return false
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func checkType(field, typ string) error {
	if !validType(typ) {
		return fmt.Errorf("identity: config: %s: invalid identifier type %q (want [a-z][a-z0-9_]*, at most %d bytes)", field, typ, maxTypeLen)
	}
	if typ == event.ProfileID {
		return fmt.Errorf("identity: config: %s: %q is a look-up type, not an identifier type", field, typ)
	}
	return nil
}

// Validate checks the configuration: valid, distinct type names, no negative
// limits.
func (c Config) Validate() error {
	seen := make(map[string]bool, len(c.Priority))
	for _, t := range c.Priority {
		if err := checkType("priority", t); err != nil {
			return err
		}
		if seen[t] {
			return fmt.Errorf("identity: config: priority: %q listed twice", t)
		}
		seen[t] = true
	}
	for _, t := range sortedKeys(c.Limits) {
		if err := checkType("limits", t); err != nil {
			return err
		}
		if n := c.Limits[t]; n < 0 {
			return fmt.Errorf("identity: config: limits: %s: negative limit %d", t, n)
		}
	}
	for _, t := range sortedKeys(c.BlockedByType) {
		if err := checkType("blocked_by_type", t); err != nil {
			return err
		}
	}
	if c.Probabilistic != nil {
		if err := c.Probabilistic.Validate(); err != nil {
			return fmt.Errorf("identity: config: probabilistic: %w", err)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// IsBlocked reports whether value, a normalised plaintext value of an
// identifier of type typ, is blocked (globally or for typ). The comparison
// trims spaces and ignores case. The ingest edge calls it and drops blocked
// identifiers; they never reach Resolve.
func (c Config) IsBlocked(typ, value string) bool {
	v := strings.TrimSpace(value)
	for _, b := range c.Blocked {
		if strings.EqualFold(v, strings.TrimSpace(b)) {
			return true
		}
	}
	for _, b := range c.BlockedByType[typ] {
		if strings.EqualFold(v, strings.TrimSpace(b)) {
			return true
		}
	}
	return false
}

// Rank returns the priority rank of an identifier type; lower is higher
// priority. A listed type ranks at its index in Priority; every unlisted type
// ranks len(Priority) (Compare orders those alphabetically); an unlisted
// anonymous_id ranks len(Priority)+1.
func (c Config) Rank(typ string) int {
	for i, p := range c.Priority {
		if p == typ {
			return i
		}
	}
	if typ == event.AnonymousID {
		return len(c.Priority) + 1
	}
	return len(c.Priority)
}

// Compare orders identifier types by priority: negative when a has higher
// priority than b, 0 for the same type. It refines Rank by ordering unlisted
// types alphabetically.
func (c Config) Compare(a, b string) int {
	if a == b {
		return 0
	}
	if r := cmp.Compare(c.Rank(a), c.Rank(b)); r != 0 {
		return r
	}
	return strings.Compare(a, b)
}
