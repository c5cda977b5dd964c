package main

import (
	"net/http"
	"testing"
	"time"

	alog "github.com/aurumcdp/aurum/log"
	"github.com/nats-io/nats.go"
)

// natsConnect connects to a node's NATS listener with opts (credentials:
// natsAdmin, natsProducer, natsReader) and closes the connection at the
// end of the test.
func natsConnect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("NATS connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsAdmin is the credential of the nodes' bootstrap admin token: full
// permissions.
func natsAdmin() nats.Option { return nats.Token(testAdminToken) }

// natsProducer is the credential of source's producer.
func natsProducer(source, writeKey string) nats.Option { return nats.UserInfo(source, writeKey) }

// natsReader is the credential of a reader: an API token of role viewer or
// editor, with the readers' inbox prefix for JetStream.
func natsReader(token string) []nats.Option {
	return []nats.Option{nats.Token(token), nats.CustomInboxPrefix(alog.ReaderInboxPrefix)}
}

// createToken creates an API token of role through the API and returns
// its id and secret.
func (n *node) createToken(name, role string) (id, secret string) {
	n.t.Helper()
	var out struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	n.mustJSON("POST", "/v1/tokens", map[string]string{"name": name, "role": role}, adminAuth, http.StatusCreated, &out)
	if out.Token == "" || out.ID == "" {
		n.t.Fatalf("create token: %+v", out)
	}
	return out.ID, out.Token
}

// followAudiences subscribes to aurum.audience.> with a new viewer token
// and returns the transitions as they arrive (buf buffered); the
// subscription is in place (flushed) when it returns and ends with the
// test.
func (n *node) followAudiences(t *testing.T, buf int) <-chan *nats.Msg {
	t.Helper()
	_, viewer := n.createToken("follower", "viewer")
	nc := natsConnect(t, n.NATS, natsReader(viewer)...)
	msgs := make(chan *nats.Msg, buf)
	if _, err := nc.ChanSubscribe("aurum.audience.>", msgs); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return msgs
}
