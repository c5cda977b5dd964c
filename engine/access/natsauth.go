package access

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/aurumcdp/aurum/auth"
	alog "github.com/aurumcdp/aurum/log"
)

// natsClass is a class of restricted NATS client.
type natsClass int

const (
	// natsProducer connects with user = source name, password = the
	// source's write key.
	natsProducer natsClass = iota
	// natsReader connects with token = an API token or session of role
	// viewer or editor.
	natsReader
)

// natsPermissions is every NATS permission a restricted client can get, one
// row per subject and direction. Admins (the bootstrap token, tokens and
// sessions of role admin) get full permissions instead; the privacy role
// and anything else are refused a connection. On top of this table the log
// denies every restricted client aurum.log.>, aurum.audit, its own inbox
// and the consumers it runs itself (the gateway, the webhook destinations).
var natsPermissions = []struct {
	class   natsClass
	publish bool   // false: subscribe
	subject string // "{source}" is the producer's source
}{
	// A producer publishes raw events on its own source's subject only.
	{natsProducer, true, alog.IngestPrefix + "{source}"},
	// It receives the JetStream PubAck of each publish on the default inbox.
	{natsProducer, false, "_INBOX.>"},

	// Readers follow the outputs with plain subscriptions.
	{natsReader, false, alog.AudiencePrefix + ">"},
	{natsReader, false, alog.IdentityPrefix + ">"},
	// They receive JetStream answers and pulled messages on the readers'
	// inbox, which producers cannot read (nats.CustomInboxPrefix).
	{natsReader, false, alog.ReaderInboxPrefix + ".>"},
	// Read-only metadata the clients' defaults ask for: the account's
	// JetStream info (totals and limits, no names: the JavaScript client's
	// jetstreamManager) and the names of the streams, optionally those
	// whose configured subjects match a filter (a stream looked up by
	// subject: nats.go's js.Subscribe without BindStream,
	// StreamNameBySubject). Neither answers with a message or the state of
	// a stream (docs/security.md).
	{natsReader, true, "$JS.API.INFO"},
	{natsReader, true, "$JS.API.STREAM.NAMES"},
	// JetStream on AURUM_OUT only: the stream's info,
	{natsReader, true, "$JS.API.STREAM.INFO." + alog.StreamOut},
	// one message by sequence or subject,
	{natsReader, true, "$JS.API.STREAM.MSG.GET." + alog.StreamOut},
	{natsReader, true, "$JS.API.DIRECT.GET." + alog.StreamOut},
	{natsReader, true, "$JS.API.DIRECT.GET." + alog.StreamOut + ".>"},
	// create a consumer: ephemeral (old form), named or durable with a
	// filter (new form), durable (old form),
	{natsReader, true, "$JS.API.CONSUMER.CREATE." + alog.StreamOut},
	{natsReader, true, "$JS.API.CONSUMER.CREATE." + alog.StreamOut + ".>"},
	{natsReader, true, "$JS.API.CONSUMER.DURABLE.CREATE." + alog.StreamOut + ".*"},
	// look one up, list them, delete one,
	{natsReader, true, "$JS.API.CONSUMER.INFO." + alog.StreamOut + ".*"},
	{natsReader, true, "$JS.API.CONSUMER.NAMES." + alog.StreamOut},
	{natsReader, true, "$JS.API.CONSUMER.LIST." + alog.StreamOut},
	{natsReader, true, "$JS.API.CONSUMER.DELETE." + alog.StreamOut + ".*"},
	// fetch from a pull consumer,
	{natsReader, true, "$JS.API.CONSUMER.MSG.NEXT." + alog.StreamOut + ".*"},
	// ack (nak, term, in progress) a delivered message,
	{natsReader, true, "$JS.ACK." + alog.StreamOut + ".>"},
	// answer a push consumer's flow control.
	{natsReader, true, "$JS.FC." + alog.StreamOut + ".>"},
}

// natsGrant returns the restricted grant of class for name; source is the
// producer's source.
func natsGrant(class natsClass, name, source string) alog.Grant {
	g := alog.Grant{Name: name}
	for _, p := range natsPermissions {
		if p.class != class {
			continue
		}
		s := strings.ReplaceAll(p.subject, "{source}", source)
		if p.publish {
			g.Publish = append(g.Publish, s)
		} else {
			g.Subscribe = append(g.Subscribe, s)
		}
	}
	return g
}

// Grant names. Tokens and sessions are named by id (never the secret), so
// that a revocation can find their connections.
const natsBootstrapName = "bootstrap"

// natsSourceName names a producer's connection by its source and the
// fingerprint of the write key it presented (a prefix of the key's SHA-256,
// which the engine stores anyway; never the key), so that a deletion or a
// rotation finds the connections whose key stopped working. A connection
// on a rotated-out key, which the server closes when its grace ends, is
// marked ":grace".
func natsSourceName(source string, keyHash []byte, grace bool) string {
	name := natsSourcePrefix + source + ":" + hex.EncodeToString(keyHash[:natsKeyPrint])
	if grace {
		name += natsGraceSuffix
	}
	return name
}

const (
	natsSourcePrefix = "source:"
	natsKeyPrint     = 6 // bytes of the key's hash in a connection's name
	natsGraceSuffix  = ":grace"
)

// AuthorizeNATS is the embedded server's alog.Authorizer.
func (e *Gate) AuthorizeNATS(user, password, token string) (alog.Grant, bool) {
	switch {
	case token != "" && user == "" && password == "":
		if len(e.opts.AdminTokenHash) == sha256.Size {
			h := auth.HashSecret(token)
			if auth.Equal(h[:], e.opts.AdminTokenHash) {
				return alog.Grant{Name: natsBootstrapName, Full: true}, true
			}
		}
		p, err := e.Authenticate(token)
		if err != nil {
			return alog.Grant{}, false
		}
		name := p.Kind + ":" + p.TokenID
		var g alog.Grant
		switch p.Role {
		case auth.RoleAdmin:
			g = alog.Grant{Name: name, Full: true}
		case auth.RoleViewer, auth.RoleEditor:
			g = natsGrant(natsReader, name, "")
		default: // privacy: no output access
			return alog.Grant{}, false
		}
		e.access.mu.RLock()
		tk := e.access.byID[p.TokenID]
		e.access.mu.RUnlock()
		if tk.Expires != 0 {
			g.Expires = time.UnixMilli(tk.Expires)
		}
		return g, true
	case user != "" && password != "" && token == "":
		src, ok := e.SourceForKey(password)
		if !ok || src != user {
			return alog.Grant{}, false
		}
		h := sha256.Sum256([]byte(password))
		s, _ := e.sources.get(src)
		old := auth.Equal(s.OldKeyHash, h[:])
		g := natsGrant(natsProducer, natsSourceName(src, h[:], old), src)
		if old {
			g.Expires = time.UnixMilli(s.OldKeyUntil) // a rotated-out key: until its grace ends
		}
		return g, true
	}
	return alog.Grant{}, false
}

// NATSClientValid reports whether a connection granted as name may stay
// connected: a token's or session's connections are closed once it is
// revoked (or its user deleted), a producer's once its source is deleted or
// the key it presented stops working (a rotation without grace); expiry
// closes them by itself (the grant's deadline).
func (e *Gate) NATSClientValid(name string) bool {
	if rest, ok := strings.CutPrefix(name, natsSourcePrefix); ok {
		rest, grace := strings.CutSuffix(rest, natsGraceSuffix)
		src, print, ok := strings.Cut(rest, ":")
		return ok && e.sourceKeyValid(src, print, grace)
	}
	kind, id, ok := strings.Cut(name, ":")
	if !ok || (kind != auth.KindToken && kind != auth.KindSession && kind != auth.KindSSO) {
		return true
	}
	e.access.mu.RLock()
	_, ok = e.access.byID[id]
	e.access.mu.RUnlock()
	return ok
}

// sourceKeyValid reports whether source exists and the key of fingerprint
// print (natsSourceName) still works for a connection: its current key; or
// the one before, within its grace, for a connection granted on it as such
// (grace: the server closes it when the grace ends). A connection granted
// on a key that was rotated out since has no such deadline: it is closed
// and, reconnecting, gets one.
func (e *Gate) sourceKeyValid(source, print string, grace bool) bool {
	s, ok := e.sources.get(source)
	if !ok {
		return false
	}
	match := func(h []byte) bool {
		return len(h) >= natsKeyPrint && hex.EncodeToString(h[:natsKeyPrint]) == print
	}
	if grace {
		return match(s.OldKeyHash) && e.opts.Now().UnixMilli() < s.OldKeyUntil
	}
	return match(s.KeyHash)
}
