package identity

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       func() Config // nil when an error is expected
		err        string        // substring of the error
	}{
		{name: "empty file", yaml: "", want: DefaultConfig},
		{name: "comment only", yaml: "# nothing\n", want: DefaultConfig},
		{
			name: "partial",
			yaml: "limits:\n  email: 3\n",
			want: func() Config { c := DefaultConfig(); c.Limits = map[string]int{"email": 3}; return c },
		},
		{
			name: "full",
			yaml: "priority: [user_id, crm_id]\nlimits: {user_id: 1, crm_id: 2}\nblocked: [x]\nblocked_by_type: {email: [a@b.c]}\n",
			want: func() Config {
				return Config{
					Priority:      []string{"user_id", "crm_id"},
					Limits:        map[string]int{"user_id": 1, "crm_id": 2},
					Blocked:       []string{"x"},
					BlockedByType: map[string][]string{"email": {"a@b.c"}},
				}
			},
		},
		{
			name: "explicitly empty",
			yaml: "priority: []\nlimits: {}\nblocked: []\n",
			want: func() Config {
				return Config{Priority: []string{}, Limits: map[string]int{}, Blocked: []string{}}
			},
		},
		{name: "unknown key", yaml: "limits: {}\nprioritty: [email]\n", err: "prioritty"},
		{name: "unknown nested key type", yaml: "limits: [1]\n", err: "cannot unmarshal"},
		{name: "negative limit", yaml: "limits: {email: -1}\n", err: "negative limit"},
		{name: "bad type in priority", yaml: "priority: [Email]\n", err: `invalid identifier type "Email"`},
		{name: "bad type in limits", yaml: "limits: {\"a/b\": 1}\n", err: "invalid identifier type"},
		{name: "bad type in blocked_by_type", yaml: "blocked_by_type: {\"\": [x]}\n", err: "invalid identifier type"},
		{name: "duplicate priority", yaml: "priority: [email, email]\n", err: "listed twice"},
		{name: "profile_id", yaml: "priority: [profile_id]\n", err: "look-up type"},
		{name: "not yaml", yaml: "priority: [\n", err: "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "identity: load config") {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.want(); !reflect.DeepEqual(cfg, want) {
				t.Fatalf("got %#v\nwant %#v", cfg, want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	// DefaultConfig returns fresh values each time.
	c.Limits["user_id"] = 5
	c.Blocked[0] = "x"
	if d := DefaultConfig(); d.Limits["user_id"] != 1 || d.Blocked[0] != "" {
		t.Fatal("DefaultConfig shares state")
	}
}

func TestNewCopiesConfig(t *testing.T) {
	c := DefaultConfig()
	k := New(c)
	c.Limits["user_id"] = 7
	c.Priority[0] = "email"
	if got := k.Config(); got.Limits["user_id"] != 1 || got.Priority[0] != "user_id" {
		t.Fatalf("keychain config changed with the caller's: %+v", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted an invalid config")
		}
	}()
	New(Config{Limits: map[string]int{"email": -1}})
}

func TestLoadConfigProbabilistic(t *testing.T) {
	const good = `limits: {crm_id: 100}
probabilistic:
  fields: {given_name: name, surname: name, date_of_birth: date, postcode: exact, email: email}
  blocking: [[surname], [given_name, date_of_birth], [postcode]]
  auto_merge: 0.99
  review: 0.80
  term_frequency: true
`
	for _, tc := range []struct {
		name, yaml string
		err        string // "" when valid
	}{
		{name: "issue example", yaml: good},
		{name: "absent", yaml: "limits: {crm_id: 100}\n"},
		{name: "unknown comparison", yaml: "probabilistic:\n  fields: {surname: soundex}\n  blocking: [[surname]]\n", err: `fields.surname: unknown comparison "soundex"`},
		{name: "no blocking", yaml: "probabilistic:\n  fields: {surname: name}\n", err: "blocking: at least one rule"},
		{name: "blocking on unknown trait", yaml: "probabilistic:\n  fields: {surname: name}\n  blocking: [[postcode]]\n", err: `blocking[0][0]: trait "postcode" is not in fields`},
		{name: "review above auto_merge", yaml: "probabilistic:\n  fields: {surname: name}\n  blocking: [[surname]]\n  auto_merge: 0.9\n  review: 0.95\n", err: "review: 0.95 is above auto_merge 0.9"},
		{name: "threshold not a probability", yaml: "probabilistic:\n  fields: {surname: name}\n  blocking: [[surname]]\n  auto_merge: 1.5\n", err: "auto_merge: 1.5 is not a probability"},
		{name: "unknown key", yaml: "probabilistic:\n  fields: {surname: name}\n  blocking: [[surname]]\n  automerge: 0.9\n", err: "automerge"},
		{name: "no fields", yaml: "probabilistic: {blocking: [[surname]]}\n", err: "fields: at least one trait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "identity.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "identity: load config") {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				if !strings.Contains(tc.name, "unknown key") && !strings.Contains(err.Error(), "probabilistic") {
					t.Fatalf("err = %v does not name the probabilistic section", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "absent" {
				if cfg.Probabilistic != nil {
					t.Fatalf("Probabilistic = %+v, want nil", cfg.Probabilistic)
				}
				return
			}
			p := cfg.Probabilistic
			if p == nil || p.Fields["date_of_birth"] != "date" || len(p.Blocking) != 3 || p.Blocking[1][1] != "date_of_birth" ||
				p.AutoMerge != 0.99 || p.Review != 0.80 || !p.TermFrequency || cfg.Limits["crm_id"] != 100 {
				t.Fatalf("config = %+v, probabilistic %+v", cfg, p)
			}
			// The keychain keeps its own copy.
			k := New(cfg)
			p.Fields["surname"] = "exact"
			if k.Config().Probabilistic.Fields["surname"] != "name" {
				t.Fatal("New did not copy the probabilistic config")
			}
		})
	}
}
