package projections

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/store"
	"github.com/vmihailenco/msgpack/v5"
)

// Token is an API token or a login session, as kept on the log and in the
// state. Only the SHA-256 of its secret is kept.
type Token struct {
	ID      string `msgpack:"i"` // ULID (26 characters)
	Name    string `msgpack:"n"` // API token: its name; session: the user's name
	Role    string `msgpack:"r"` // API token: its role; session: set from the user at apply
	Hash    []byte `msgpack:"h"` // SHA-256 of the secret
	Kind    string `msgpack:"k"` // auth.KindToken, auth.KindSession or auth.KindSSO
	Created int64  `msgpack:"c"` // Unix ms (log time of the record)
	Expires int64  `msgpack:"x"` // Unix ms; 0: never
	// Step is a session's TOTP time step: applied only if later than the
	// user's last one, so a code logs in at most once.
	Step uint64 `msgpack:"st,omitempty"`
}

// User is a person who logs in (password and TOTP).
type User struct {
	Name         string `msgpack:"n"`
	Role         string `msgpack:"r"`
	PasswordHash string `msgpack:"p"`  // argon2id, PHC string
	TOTPKey      []byte `msgpack:"tk"` // data key id that sealed the TOTP secret
	TOTPSealed   []byte `msgpack:"ts"`
	LastStep     uint64 `msgpack:"ls,omitempty"` // TOTP step of the last login
	Created      int64  `msgpack:"c"`
}

// Access control kinds.
const (
	ControlTokenPut    = "token.put"    // Token: an API token or a session (first put of an id wins)
	ControlTokenRevoke = "token.revoke" // Token.ID
	ControlUserPut     = "user.put"     // User: create (first put of a name wins)
	ControlUserDelete  = "user.delete"  // User.Name; its sessions go too
)

var (
	prefixToken = []byte("tk/") // tk/<token id> → msgpack Token
	prefixUser  = []byte("us/") // us/<name> → msgpack User
)

// userName is the shape of user and token names.
var userName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)

// ValidAccessName checks a user or token name.
func ValidAccessName(name string) error {
	if !userName.MatchString(name) {
		return fmt.Errorf("name %q: 1-128 characters of letters, digits and . _ @ + -, starting with a letter or digit", name)
	}
	return nil
}

func tokenKey(id string) []byte  { return append(append([]byte(nil), prefixToken...), id...) }
func userKey(name string) []byte { return append(append([]byte(nil), prefixUser...), name...) }

// Tokens lists the stored tokens and sessions by id.
func Tokens(r store.Reader) ([]Token, error) {
	out, err := scanValues[Token](r, prefixToken, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: list tokens: %w", err)
	}
	return out, nil
}

// Users lists the stored users by name.
func Users(r store.Reader) ([]User, error) {
	out, err := scanValues[User](r, prefixUser, 0)
	if err != nil {
		return nil, fmt.Errorf("projections: list users: %w", err)
	}
	return out, nil
}

func getMsgpack[T any](r store.Reader, key []byte) (T, bool, error) {
	var x T
	v, err := r.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return x, false, nil
	}
	if err != nil {
		return x, false, err
	}
	if err := msgpack.Unmarshal(v, &x); err != nil {
		return x, false, fmt.Errorf("projections: decode %q: %w", key, err)
	}
	return x, true, nil
}

// applyAccessControl applies the token and user kinds. Invalid records are
// ignored alike by every replay; the times are the log's.
func (sm *StateMachine) applyAccessControl(rw store.ReadWriter, c *Control, res *Result) error {
	switch c.Kind {
	case ControlTokenPut:
		t := c.Token
		if len(t.ID) != 26 || len(t.Hash) != 32 || (t.Kind != auth.KindToken && t.Kind != auth.KindSession && t.Kind != auth.KindSSO) {
			return nil
		}
		key := tokenKey(t.ID)
		if _, exists, err := getMsgpack[Token](rw, key); err != nil || exists {
			return err
		}
		if t.Kind == auth.KindSession {
			u, ok, err := getMsgpack[User](rw, userKey(t.Name))
			if err != nil || !ok || t.Step <= u.LastStep {
				return err // unknown user, or a TOTP step already used: no session
			}
			u.LastStep, t.Role = t.Step, u.Role
			if err := setMsgpack(rw, userKey(u.Name), &u); err != nil {
				return err
			}
			if err := pruneSessions(rw, c.Time, ""); err != nil {
				return err
			}
		} else if ValidAccessName(t.Name) != nil || !auth.Role(t.Role).Valid() {
			return nil
		} else if t.Kind == auth.KindSSO {
			if t.Expires == 0 {
				return nil // a single sign-on session always expires
			}
			if err := pruneSessions(rw, c.Time, ""); err != nil {
				return err
			}
		}
		t.Created = c.Time
		if err := setMsgpack(rw, key, &t); err != nil {
			return err
		}
	case ControlTokenRevoke:
		key := tokenKey(c.Token.ID)
		if _, exists, err := getMsgpack[Token](rw, key); err != nil || !exists {
			return err
		}
		if err := rw.Delete(key); err != nil {
			return err
		}
	case ControlUserPut:
		u := c.User
		if ValidAccessName(u.Name) != nil || !auth.Role(u.Role).Valid() || u.PasswordHash == "" || len(u.TOTPSealed) == 0 {
			return nil
		}
		key := userKey(u.Name)
		if _, exists, err := getMsgpack[User](rw, key); err != nil || exists {
			return err
		}
		u.Created, u.LastStep = c.Time, 0
		if err := setMsgpack(rw, key, &u); err != nil {
			return err
		}
	case ControlUserDelete:
		key := userKey(c.User.Name)
		if _, exists, err := getMsgpack[User](rw, key); err != nil || !exists {
			return err
		}
		if err := rw.Delete(key); err != nil {
			return err
		}
		if err := pruneSessions(rw, c.Time, c.User.Name); err != nil {
			return err
		}
	}
	res.Access = true
	return nil
}

// pruneSessions deletes the sessions (login and single sign-on) that
// expired before log time now, and
// when user is set, every session of user.
func pruneSessions(rw store.ReadWriter, now int64, user string) error {
	var dead [][]byte
	var derr error
	err := rw.Scan(prefixToken, store.PrefixEnd(prefixToken), false, func(k, v []byte) bool {
		var t Token
		if derr = msgpack.Unmarshal(v, &t); derr != nil {
			return false
		}
		expired := t.Expires != 0 && t.Expires < now
		if (t.Kind == auth.KindSession && (expired || (user != "" && t.Name == user))) || (t.Kind == auth.KindSSO && expired) {
			dead = append(dead, append([]byte(nil), k...))
		}
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("projections: prune sessions: %w", err)
	}
	for _, k := range dead {
		if err := rw.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
