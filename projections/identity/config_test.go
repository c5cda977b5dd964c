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
