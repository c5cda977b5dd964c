package identity

import (
	"encoding/json"
	"testing"
)

// FuzzParseConfig: any YAML either is refused or yields a config that
// validates, survives a JSON round trip (the form on the log) and answers
// its queries without panicking.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("priority: [user_id, email, phone, loyalty_id, anonymous_id]\nlimits: {user_id: 1, email: 3}\nblocked: [\"\", \"null\", \"undefined\", \"anonymous\", \"0\"]\n"))
	f.Add([]byte("limits: {user_id: -1}\n"))
	f.Add([]byte("priority: [Email]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("blocked: {x: 1}\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("parseConfig accepted an invalid config: %v", err)
		}
		js, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var back Config
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("JSON round trip: %v", err)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("round-tripped config invalid: %v", err)
		}
		for _, typ := range append([]string{"user_id", "email", ""}, cfg.Priority...) {
			_ = cfg.IsBlocked(typ, "null")
			_ = cfg.Rank(typ)
			_ = cfg.Compare(typ, "email")
		}
	})
}
