package projections

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// TestAccessControl applies token and user records in order and checks the
// tokens and users after each: first put wins, sessions need a later TOTP
// step than the user's last, deleting a user ends their sessions, expired
// sessions are pruned by log time, and invalid records change nothing.
func TestAccessControl(t *testing.T) {
	id := func(n int) string { return fmt.Sprintf("01J%023d", n) }
	h := func(n int) []byte { return bytes.Repeat([]byte{byte(n)}, 32) }
	tok := func(n int, name, role string) Control {
		return Control{Kind: ControlTokenPut, Token: Token{ID: id(n), Name: name, Role: role, Hash: h(n), Kind: "token"}}
	}
	sess := func(n int, user string, step uint64, exp int64) Control {
		return Control{Kind: ControlTokenPut, Token: Token{ID: id(n), Name: user, Role: "admin", Hash: h(n), Kind: "session", Step: step, Expires: exp}}
	}
	user := func(name, role string) Control {
		return Control{Kind: ControlUserPut, User: User{Name: name, Role: role, PasswordHash: "$argon2id$x", TOTPKey: []byte("k"), TOTPSealed: []byte("s")}}
	}
	steps := []struct {
		name   string
		c      Control
		time   int64
		tokens string // id:name:role:kind, sorted
		users  string // name:role:laststep
	}{
		{"token", tok(1, "ci", "editor"), 10, "1:ci:editor:token", ""},
		{"same id again: first wins", tok(1, "other", "admin"), 11, "1:ci:editor:token", ""},
		{"bad role", tok(2, "x", "root"), 12, "1:ci:editor:token", ""},
		{"bad hash", Control{Kind: ControlTokenPut, Token: Token{ID: id(3), Name: "x", Role: "viewer", Hash: []byte{1}, Kind: "token"}}, 13, "1:ci:editor:token", ""},
		{"session of unknown user", sess(4, "ada", 100, 1000), 14, "1:ci:editor:token", ""},
		{"user", user("ada", "viewer"), 15, "1:ci:editor:token", "ada:viewer:0"},
		{"user again: first wins", user("ada", "admin"), 16, "1:ci:editor:token", "ada:viewer:0"},
		{"user with bad name", user("a b", "viewer"), 16, "1:ci:editor:token", "ada:viewer:0"},
		{"session takes the user's role", sess(5, "ada", 100, 1000), 17, "1:ci:editor:token 5:ada:viewer:session", "ada:viewer:100"},
		{"replayed step", sess(6, "ada", 100, 1000), 18, "1:ci:editor:token 5:ada:viewer:session", "ada:viewer:100"},
		{"older step", sess(7, "ada", 99, 1000), 19, "1:ci:editor:token 5:ada:viewer:session", "ada:viewer:100"},
		{"later step", sess(8, "ada", 101, 5000), 20, "1:ci:editor:token 5:ada:viewer:session 8:ada:viewer:session", "ada:viewer:101"},
		{"a session after 5 expired prunes it", sess(9, "ada", 102, 6000), 2000, "1:ci:editor:token 8:ada:viewer:session 9:ada:viewer:session", "ada:viewer:102"},
		{"revoke", Control{Kind: ControlTokenRevoke, Token: Token{ID: id(1)}}, 2001, "8:ada:viewer:session 9:ada:viewer:session", "ada:viewer:102"},
		{"revoke unknown", Control{Kind: ControlTokenRevoke, Token: Token{ID: id(1)}}, 2002, "8:ada:viewer:session 9:ada:viewer:session", "ada:viewer:102"},
		{"delete user ends sessions", Control{Kind: ControlUserDelete, User: User{Name: "ada"}}, 2003, "", ""},
		{"recreated user starts at step 0", user("ada", "editor"), 2004, "", "ada:editor:0"},
	}
	sm, st := newSM(), store.NewMem()
	for i, s := range steps {
		s.c.Time = s.time
		data, err := msgpack.Marshal(&s.c)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sm.Apply(st, uint64(i+1), SubjectControl, data); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		toks, err := Tokens(st)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tk := range toks {
			got = append(got, fmt.Sprintf("%s:%s:%s:%s", strings.TrimLeft(tk.ID[3:], "0"), tk.Name, tk.Role, tk.Kind))
		}
		sort.Strings(got)
		if g := strings.Join(got, " "); g != s.tokens {
			t.Errorf("%s: tokens %q, want %q", s.name, g, s.tokens)
		}
		us, err := Users(st)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, u := range us {
			got = append(got, fmt.Sprintf("%s:%s:%d", u.Name, u.Role, u.LastStep))
		}
		if g := strings.Join(got, " "); g != s.users {
			t.Errorf("%s: users %q, want %q", s.name, g, s.users)
		}
	}
}
