package log

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Inbox prefixes. A NATS client receives replies (JetStream acks, API
// answers, pulled messages) on subjects under its inbox prefix, and whoever
// may subscribe to that prefix can read them. Each class of client gets its
// own prefix so that none reads another's replies.
const (
	// InternalInboxPrefix is the inbox of the log's own connection: only a
	// Full grant may subscribe to it.
	InternalInboxPrefix = "_AURUM_INTERNAL_INBOX"
	// ReaderInboxPrefix is the inbox prefix that clients reading the
	// outputs through JetStream set (nats.CustomInboxPrefix): the default
	// "_INBOX" is the producers', and a producer must not read what a
	// reader pulls.
	ReaderInboxPrefix = "_INBOX_AURUM"

	// internalUser names the log's own connection on the server.
	internalUser = "aurum-internal"
)

// Grant is what an authenticated client may do on the embedded server.
type Grant struct {
	// Name is the connection's user as the server reports it (logs,
	// monitoring) and as DisconnectClients sees it, e.g. "source:web".
	Name string
	// Publish and Subscribe are the subjects (wildcards allowed) the client
	// may publish to and subscribe to. Empty means none.
	Publish, Subscribe []string
	// Full allows every subject, like the log's own connection; Publish and
	// Subscribe are then ignored.
	Full bool
	// Expires, when set, is when the server closes the connection.
	Expires time.Time
}

// Authorizer decides who may connect to the embedded server and with what
// grant. The server calls it once per connection, from its own goroutines:
// it must be safe for concurrent use and must not block. A client presents
// either a user and password or a token; the others are "".
type Authorizer interface {
	Authorize(user, password, token string) (Grant, bool)
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(user, password, token string) (Grant, bool)

// Authorize calls f.
func (f AuthorizerFunc) Authorize(user, password, token string) (Grant, bool) {
	return f(user, password, token)
}

// serverAuth is the embedded server's CustomClientAuthentication. The log's
// own connection presents a random per-process token (never written
// anywhere) and gets full permissions; every other client goes to the
// Authorizer. A restricted grant is also denied the consumers the log runs
// itself (the gateway, ConsumeDurable's durables, e.g. the webhook
// destinations), so that no reader can pull, ack, change or delete them.
type serverAuth struct {
	authz    atomic.Pointer[Authorizer] // nil once released
	internal [sha256.Size]byte          // SHA-256 of the internal token
	now      func() time.Time
	logger   func(msg string, args ...any)

	mu         sync.Mutex
	owned      map[[2]string]struct{} // (stream, consumer) the log runs
	restricted map[string]struct{}    // names of restricted grants seen
}

var _ server.Authentication = (*serverAuth)(nil)

// newServerAuth returns the authentication and the internal token.
func newServerAuth(authz Authorizer, now func() time.Time, logger func(string, ...any)) (*serverAuth, string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", fmt.Errorf("log: internal secret: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	a := &serverAuth{
		internal:   sha256.Sum256([]byte(tok)),
		now:        now,
		logger:     logger,
		owned:      map[[2]string]struct{}{},
		restricted: map[string]struct{}{},
	}
	a.authz.Store(&authz)
	return a, tok, nil
}

// release drops the Authorizer: every client but the log's own is refused
// from then on. The log calls it when it stops the server: nats-server
// keeps timers of its own running after Shutdown (a service export's
// 2-minute response threshold, time.AfterFunc), which keep the stopped
// server and this value reachable for that long, and the Authorizer with
// them (the engine's access gate, and through it the whole closed engine:
// 25-60 MiB per engine, found in session 11).
func (a *serverAuth) release() { a.authz.Store(nil) }

// Check implements server.Authentication.
func (a *serverAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	if o == nil || c.Kind() != server.CLIENT {
		return false
	}
	if o.Token != "" {
		h := sha256.Sum256([]byte(o.Token))
		if subtle.ConstantTimeCompare(h[:], a.internal[:]) == 1 {
			c.RegisterUser(&server.User{Username: internalUser})
			return true
		}
	}
	authz := a.authz.Load()
	if authz == nil {
		return false // released: the log is closed
	}
	g, ok := (*authz).Authorize(o.Username, o.Password, o.Token)
	if !ok {
		a.logger("log: NATS client refused", "user", o.Username, "token", o.Token != "", "remote", remote(c))
		return false
	}
	if g.Name == "" || g.Name == internalUser {
		g.Name = "client"
	}
	if !g.Expires.IsZero() && !a.now().Before(g.Expires) {
		return false
	}
	u := &server.User{Username: g.Name, ConnectionDeadline: g.Expires}
	if !g.Full {
		u.Permissions = a.permissions(g)
	}
	c.RegisterUser(u)
	return true
}

func remote(c server.ClientAuthentication) string {
	if a := c.RemoteAddress(); a != nil {
		return a.String()
	}
	return "in-process"
}

// permissions turns a restricted grant into server permissions. An empty
// allow list would allow everything in nats-server: it becomes a deny of
// ">".
func (a *serverAuth) permissions(g Grant) *server.Permissions {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.restricted[g.Name] = struct{}{}
	var deny []string
	for k := range a.owned {
		s, c := k[0], k[1]
		deny = append(deny,
			"$JS.API.CONSUMER.*."+s+"."+c,      // INFO, DELETE, CREATE, PAUSE, UNPIN
			"$JS.API.CONSUMER.*."+s+"."+c+".>", // CREATE with a filter
			"$JS.API.CONSUMER.*.*."+s+"."+c,    // MSG.NEXT, DURABLE.CREATE, LEADER.STEPDOWN
			"$JS.ACK."+s+"."+c+".>",            // acks of its messages
		)
	}
	sp := func(allow []string, deny []string) *server.SubjectPermission {
		if len(allow) == 0 {
			return &server.SubjectPermission{Deny: []string{">"}}
		}
		return &server.SubjectPermission{Allow: append([]string(nil), allow...), Deny: deny}
	}
	// The shared data keys are the engines' alone, even wrapped, and so
	// is the activation store (the tools' ids of people).
	var keys []string
	for _, s := range []string{StreamKeys, StreamActivation} {
		keys = append(keys, "$JS.API.*.*."+s, "$JS.API.*.*."+s+".>", "$JS.API.*.*.*."+s, "$JS.API.*.*.*."+s+".>")
	}
	keys = append(keys, KeysPrefix+">", ActivationPrefix+">")
	pubDeny := append(append([]string{LogPrefix + ">", SubjectAudit}, keys...), deny...)
	subDeny := []string{InternalInboxPrefix + ".>", KeysPrefix + ">", ActivationPrefix + ">"}
	return &server.Permissions{Publish: sp(g.Publish, pubDeny), Subscribe: sp(g.Subscribe, subDeny)}
}

// own records a consumer the log runs; it reports whether it is new.
func (a *serverAuth) own(stream, consumer string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := [2]string{stream, consumer}
	if _, ok := a.owned[k]; ok {
		return false
	}
	a.owned[k] = struct{}{}
	return true
}

func (a *serverAuth) isRestricted(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.restricted[name]
	return ok
}

// DisconnectClients closes the connections of the embedded server's
// clients (never the log's own) whose grant name keep refuses, and returns
// how many it closed. Clients reconnect by themselves if they can: the
// Authorizer then decides again. Without an embedded server or an
// Authorizer it does nothing.
func (l *Log) DisconnectClients(keep func(name string) bool) int {
	if l.srv == nil || l.auth == nil {
		return 0
	}
	const page = 1024
	var ids []uint64
	for off := 0; ; off += page {
		cz, err := l.srv.Connz(&server.ConnzOptions{Username: true, Offset: off, Limit: page})
		if err != nil {
			l.logger.Warn("log: list NATS connections", "err", err)
			break
		}
		for _, ci := range cz.Conns {
			if ci.AuthorizedUser != internalUser && !keep(ci.AuthorizedUser) {
				ids = append(ids, ci.Cid)
			}
		}
		if len(cz.Conns) < page {
			break
		}
	}
	n := 0
	for _, id := range ids {
		if l.srv.DisconnectClientByID(id) == nil {
			n++
		}
	}
	return n
}

// ownConsumer records a consumer the log runs and, when it is new, closes
// the restricted clients' connections: their permissions, set when they
// connected, do not deny it yet; they are denied it when they reconnect.
func (l *Log) ownConsumer(stream, consumer string) {
	if l.auth == nil || !l.auth.own(stream, consumer) {
		return
	}
	if n := l.DisconnectClients(func(name string) bool { return !l.auth.isRestricted(name) }); n > 0 {
		l.logger.Info("log: closed restricted NATS connections to deny them a new consumer", "consumer", consumer, "closed", n)
	}
}
