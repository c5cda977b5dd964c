// Package access is who may do what: API tokens and login sessions (users
// with password and TOTP), sources and their write keys, Authenticate and
// Login, and the NATS authorizer with its permission table (natsauth.go).
// Gate keeps the tokens, users and sources in memory (the apply loop
// reloads them through Reload and AddSources) and changes them through the
// log: it is handed Control (append a control record), Applied (wait until
// a position is applied) and State (read the state), and wired by engine.
package access

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine/base"
	"github.com/aurumcdp/aurum/projections"
	"github.com/aurumcdp/aurum/seal"
	"github.com/aurumcdp/aurum/store"
)

// ErrUnauthenticated is returned for a secret that is unknown, revoked or
// expired, and for a failed login (which never says which factor failed).
var ErrUnauthenticated = errors.New("engine: unauthenticated")

// ErrExpired is the ErrUnauthenticated of an expired token or session.
var ErrExpired = fmt.Errorf("%w: token expired", ErrUnauthenticated)

// ErrExists is returned when creating a user whose name is taken.
var ErrExists = errors.New("engine: exists")

// TOTPIssuer names Aurum in authenticator apps.
const TOTPIssuer = "Aurum"

// Control appends a control record to the log and returns its position.
type Control interface {
	AppendControl(ctx context.Context, c projections.Control) (uint64, error)
}

// Applied waits until the state machine has applied log position seq.
type Applied interface {
	WaitApplied(ctx context.Context, seq uint64) error
}

// State runs fn on a consistent snapshot of the projections.
type State interface {
	Read(fn func(r store.Reader, sm *projections.StateMachine) error) error
}

// Options configure a Gate. Now is required.
type Options struct {
	// Now is the edge clock (expiry, ids, creation times).
	Now func() time.Time
	// SessionTTL is how long a login session lasts.
	SessionTTL time.Duration
	// PasswordParams are the argon2id costs of new password hashes.
	PasswordParams auth.PasswordParams
	// AdminTokenHash is the SHA-256 of the bootstrap admin token (NATS).
	AdminTokenHash []byte
}

// Gate is the access stage. It is safe for concurrent use.
type Gate struct {
	opts    Options
	keys    *seal.Keyring
	ids     *base.IDSource
	control Control
	applied Applied
	state   State
	access  *accessTable
	sources *sourceTable
}

// New loads the tokens, users and sources from r (the state at start) and
// returns the gate.
func New(r store.Reader, opts Options, keys *seal.Keyring, ids *base.IDSource, control Control, applied Applied, state State) (*Gate, error) {
	g := &Gate{opts: opts, keys: keys, ids: ids, control: control, applied: applied, state: state}
	var err error
	if g.sources, err = loadSources(r); err != nil {
		return nil, err
	}
	if g.access, err = loadAccess(r); err != nil {
		return nil, err
	}
	return g, nil
}

// accessTable is the in-memory view of the tokens, sessions and users in
// the state store, rebuilt by the apply loop after every entry that changes
// them, so that authentication does not read Pebble.
type accessTable struct {
	mu     sync.RWMutex
	byHash map[[32]byte]projections.Token
	byID   map[string]projections.Token
	users  map[string]projections.User
}

func loadAccess(r store.Reader) (*accessTable, error) {
	t := &accessTable{}
	return t, t.reload(r)
}

func (t *accessTable) reload(r store.Reader) error {
	toks, err := projections.Tokens(r)
	if err != nil {
		return err
	}
	users, err := projections.Users(r)
	if err != nil {
		return err
	}
	byHash := make(map[[32]byte]projections.Token, len(toks))
	byID := make(map[string]projections.Token, len(toks))
	for _, tk := range toks {
		var h [32]byte
		copy(h[:], tk.Hash)
		byHash[h], byID[tk.ID] = tk, tk
	}
	us := make(map[string]projections.User, len(users))
	for _, u := range users {
		us[u.Name] = u
	}
	t.mu.Lock()
	t.byHash, t.byID, t.users = byHash, byID, us
	t.mu.Unlock()
	return nil
}

// Reload reads the tokens, sessions and users again (the apply loop calls
// it after an entry that changed them).
func (e *Gate) Reload() error {
	return e.state.Read(func(r store.Reader, _ *projections.StateMachine) error { return e.access.reload(r) })
}

// Authenticate returns the principal of an API token or session secret. An
// unknown, revoked or expired secret is ErrUnauthenticated (the error says
// "expired" for an expired one). Expiry is checked against the edge clock.
func (e *Gate) Authenticate(secret string) (auth.Principal, error) {
	if !auth.LooksLikeSecret(secret) {
		return auth.Principal{}, fmt.Errorf("%w: invalid token", ErrUnauthenticated)
	}
	h := auth.HashSecret(secret)
	e.access.mu.RLock()
	tk, ok := e.access.byHash[h]
	var u projections.User
	var userOK bool
	if ok && tk.Kind == auth.KindSession {
		u, userOK = e.access.users[tk.Name]
	}
	e.access.mu.RUnlock()
	if !ok || !auth.Equal(tk.Hash, h[:]) {
		return auth.Principal{}, fmt.Errorf("%w: invalid token", ErrUnauthenticated)
	}
	if tk.Expires != 0 && e.opts.Now().UnixMilli() >= tk.Expires {
		return auth.Principal{}, ErrExpired
	}
	role := auth.Role(tk.Role)
	if tk.Kind == auth.KindSession {
		if !userOK {
			return auth.Principal{}, fmt.Errorf("%w: invalid token", ErrUnauthenticated)
		}
		role = auth.Role(u.Role)
	}
	return auth.Principal{Name: tk.Name, Role: role, Kind: tk.Kind, TokenID: tk.ID}, nil
}

// TokenInfo describes an API token (never its secret or hash).
type TokenInfo struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    auth.Role `json:"role"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
}

func tokenInfo(t projections.Token) TokenInfo {
	ti := TokenInfo{ID: t.ID, Name: t.Name, Role: auth.Role(t.Role), Created: time.UnixMilli(t.Created).UTC()}
	if t.Expires != 0 {
		ti.Expires = time.UnixMilli(t.Expires).UTC()
	}
	return ti
}

// CreateToken creates an API token through the log and returns its secret,
// which is shown only here: the state keeps its SHA-256. A zero expires
// means it never expires.
func (e *Gate) CreateToken(ctx context.Context, name string, role auth.Role, expires time.Time) (string, TokenInfo, error) {
	if err := projections.ValidAccessName(name); err != nil {
		return "", TokenInfo{}, fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	if !role.Valid() {
		_, err := auth.ParseRole(string(role))
		return "", TokenInfo{}, fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	now := e.opts.Now()
	var exp int64
	if !expires.IsZero() {
		if !expires.After(now) {
			return "", TokenInfo{}, fmt.Errorf("%w: expires: %s is not in the future", base.ErrInvalid, expires.Format(time.RFC3339))
		}
		exp = expires.UnixMilli()
	}
	secret, err := auth.NewSecret()
	if err != nil {
		return "", TokenInfo{}, fmt.Errorf("engine: token secret: %w", err)
	}
	h := auth.HashSecret(secret)
	id := base.ULIDString(e.ids.Next(now))
	tk, err := e.putToken(ctx, projections.Token{ID: id, Name: name, Role: string(role), Hash: h[:], Kind: auth.KindToken, Expires: exp})
	if err != nil {
		return "", TokenInfo{}, err
	}
	return secret, tokenInfo(tk), nil
}

// putToken appends a token.put record, waits until it is applied and
// returns the stored token (ErrUnauthenticated if the state machine
// refused it: a session whose TOTP step was used meanwhile).
func (e *Gate) putToken(ctx context.Context, t projections.Token) (projections.Token, error) {
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlTokenPut, Token: t})
	if err != nil {
		return projections.Token{}, fmt.Errorf("engine: put token: %w", err)
	}
	if err := e.applied.WaitApplied(ctx, seq); err != nil {
		return projections.Token{}, err
	}
	e.access.mu.RLock()
	got, ok := e.access.byID[t.ID]
	e.access.mu.RUnlock()
	if !ok || !auth.Equal(got.Hash, t.Hash) {
		return projections.Token{}, fmt.Errorf("%w: not accepted", ErrUnauthenticated)
	}
	return got, nil
}

// Tokens lists the API tokens by name (sessions are not listed).
func (e *Gate) Tokens() []TokenInfo {
	e.access.mu.RLock()
	out := make([]TokenInfo, 0, len(e.access.byID))
	for _, t := range e.access.byID {
		if t.Kind == auth.KindToken {
			out = append(out, tokenInfo(t))
		}
	}
	e.access.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// RevokeToken revokes an API token or a session by id; it stops working as
// soon as this returns.
func (e *Gate) RevokeToken(ctx context.Context, id string) error {
	e.access.mu.RLock()
	_, ok := e.access.byID[id]
	e.access.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: token %q", base.ErrNotFound, id)
	}
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlTokenRevoke, Token: projections.Token{ID: id}})
	if err != nil {
		return fmt.Errorf("engine: revoke token: %w", err)
	}
	return e.applied.WaitApplied(ctx, seq)
}

// UserInfo describes a user (never the password hash or TOTP secret).
type UserInfo struct {
	Name    string    `json:"name"`
	Role    auth.Role `json:"role"`
	Created time.Time `json:"created"`
}

// totpKeyID names the data key that seals users' TOTP secrets.
func (e *Gate) totpKeyID() []byte { return e.keys.Hash("system", "totp-secrets") }

// CreateUser creates a person who logs in with password and TOTP, through
// the log, and returns the otpauth:// URI to enrol the second factor: shown
// only here. The state keeps the argon2id hash of the password and the
// TOTP secret sealed.
func (e *Gate) CreateUser(ctx context.Context, name string, role auth.Role, password string) (string, error) {
	if err := projections.ValidAccessName(name); err != nil {
		return "", fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	if !role.Valid() {
		_, err := auth.ParseRole(string(role))
		return "", fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	if err := auth.CheckPassword(password); err != nil {
		return "", fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	e.access.mu.RLock()
	_, exists := e.access.users[name]
	e.access.mu.RUnlock()
	if exists {
		return "", fmt.Errorf("%w: user %q", ErrExists, name)
	}
	ph, err := auth.HashPassword(password, e.opts.PasswordParams)
	if err != nil {
		return "", fmt.Errorf("engine: hash password: %w", err)
	}
	secret, err := auth.NewTOTPSecret()
	if err != nil {
		return "", fmt.Errorf("engine: totp secret: %w", err)
	}
	kid := e.totpKeyID()
	if err := e.keys.Ensure([][]byte{kid}); err != nil {
		return "", err
	}
	sealed, err := e.keys.Seal(kid, secret)
	if err != nil {
		return "", err
	}
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlUserPut, User: projections.User{
		Name: name, Role: string(role), PasswordHash: ph, TOTPKey: kid, TOTPSealed: sealed}})
	if err != nil {
		return "", fmt.Errorf("engine: create user: %w", err)
	}
	if err := e.applied.WaitApplied(ctx, seq); err != nil {
		return "", err
	}
	e.access.mu.RLock()
	u, ok := e.access.users[name]
	e.access.mu.RUnlock()
	if !ok || u.PasswordHash != ph {
		return "", fmt.Errorf("%w: user %q", ErrExists, name) // a concurrent create won
	}
	return auth.TOTPURI(TOTPIssuer, name, secret), nil
}

// Users lists the users by name.
func (e *Gate) Users() []UserInfo {
	e.access.mu.RLock()
	out := make([]UserInfo, 0, len(e.access.users))
	for _, u := range e.access.users {
		out = append(out, UserInfo{Name: u.Name, Role: auth.Role(u.Role), Created: time.UnixMilli(u.Created).UTC()})
	}
	e.access.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// DeleteUser removes a user and ends their sessions.
func (e *Gate) DeleteUser(ctx context.Context, name string) error {
	e.access.mu.RLock()
	_, ok := e.access.users[name]
	e.access.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: user %q", base.ErrNotFound, name)
	}
	seq, err := e.control.AppendControl(ctx, projections.Control{Kind: projections.ControlUserDelete, User: projections.User{Name: name}})
	if err != nil {
		return fmt.Errorf("engine: delete user: %w", err)
	}
	return e.applied.WaitApplied(ctx, seq)
}

// Session is a login's result: its secret (shown once), role and expiry.
type Session struct {
	Token   string    `json:"token"`
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    auth.Role `json:"role"`
	Expires time.Time `json:"expires"`
}

// dummyPasswordHash is verified for unknown users, so that a login takes as
// long whether or not the name exists.
var dummyPasswordHash = sync.OnceValue(func() string {
	h, _ := auth.HashPassword("aurum-no-such-user-password", auth.PasswordParams{})
	return h
})

// Login checks a person's password and TOTP code and opens a session of
// Options.SessionTTL with the user's role. Every failure is
// ErrUnauthenticated and never says which factor failed. A code is accepted
// once: its time step must be later than that of the user's last login
// (the state machine enforces it, so concurrent logins with one code open
// one session).
func (e *Gate) Login(ctx context.Context, name, password, code string) (Session, error) {
	fail := fmt.Errorf("%w: wrong name, password or code", ErrUnauthenticated)
	e.access.mu.RLock()
	u, ok := e.access.users[name]
	e.access.mu.RUnlock()
	ph := u.PasswordHash
	if !ok {
		ph = dummyPasswordHash()
	}
	good, err := auth.VerifyPassword(password, ph)
	if err != nil {
		return Session{}, fmt.Errorf("engine: login: %w", err)
	}
	if !ok || !good {
		return Session{}, fail
	}
	secret, err := e.keys.Open(u.TOTPKey, u.TOTPSealed)
	if err != nil {
		return Session{}, fmt.Errorf("engine: login: totp secret: %w", err)
	}
	now := e.opts.Now()
	step, ok := auth.VerifyTOTP(secret, code, now, u.LastStep)
	if !ok {
		return Session{}, fail
	}
	tokSecret, err := auth.NewSecret()
	if err != nil {
		return Session{}, fmt.Errorf("engine: session secret: %w", err)
	}
	h := auth.HashSecret(tokSecret)
	exp := now.Add(e.opts.SessionTTL)
	tk, err := e.putToken(ctx, projections.Token{ID: base.ULIDString(e.ids.Next(now)), Name: name, Role: u.Role, Hash: h[:],
		Kind: auth.KindSession, Expires: exp.UnixMilli(), Step: step})
	if errors.Is(err, ErrUnauthenticated) {
		return Session{}, fail // the code was used by a concurrent login
	}
	if err != nil {
		return Session{}, err
	}
	return Session{Token: tokSecret, ID: tk.ID, Name: name, Role: auth.Role(tk.Role), Expires: time.UnixMilli(tk.Expires).UTC()}, nil
}

// SessionKey is the 32-byte key that seals the console's session cookies:
// derived from the master key (through the keyring's keyed hash), so every
// node of a cluster derives the same one and a cookie holds on any node.
func (e *Gate) SessionKey() []byte {
	return append(e.keys.Hash("system", "console-session-key/1"), e.keys.Hash("system", "console-session-key/2")...)
}

// OpenSSOSession opens a single sign-on session through the log: a person
// the OpenID Connect provider vouched for, with the role its claim mapped
// to, until expires. Like a login session it is a secret shown once
// (Session.Token), works on every node, ends at expiry or when revoked
// (RevokeToken with Session.ID).
func (e *Gate) OpenSSOSession(ctx context.Context, name string, role auth.Role, expires time.Time) (Session, error) {
	if err := projections.ValidAccessName(name); err != nil {
		return Session{}, fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	if !role.Valid() {
		_, err := auth.ParseRole(string(role))
		return Session{}, fmt.Errorf("%w: %v", base.ErrInvalid, err)
	}
	now := e.opts.Now()
	if !expires.After(now) {
		return Session{}, fmt.Errorf("%w: expires: %s is not in the future", base.ErrInvalid, expires.Format(time.RFC3339))
	}
	secret, err := auth.NewSecret()
	if err != nil {
		return Session{}, fmt.Errorf("engine: session secret: %w", err)
	}
	h := auth.HashSecret(secret)
	tk, err := e.putToken(ctx, projections.Token{ID: base.ULIDString(e.ids.Next(now)), Name: name, Role: string(role), Hash: h[:],
		Kind: auth.KindSSO, Expires: expires.UnixMilli()})
	if err != nil {
		return Session{}, err
	}
	return Session{Token: secret, ID: tk.ID, Name: name, Role: auth.Role(tk.Role), Expires: time.UnixMilli(tk.Expires).UTC()}, nil
}
