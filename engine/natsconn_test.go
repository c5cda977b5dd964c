package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/auth"
	"github.com/aurumcdp/aurum/engine"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/nats-io/nats.go"
)

// natsConnect connects to the engine's embedded NATS server with opts and
// closes the connection at the end of the test.
func natsConnect(t testing.TB, e *engine.Engine, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.NATSURL(), append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", e.NATSURL(), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsProducer connects as the producer of source, with its write key.
func natsProducer(t testing.TB, e *engine.Engine, source, writeKey string) *nats.Conn {
	t.Helper()
	return natsConnect(t, e, nats.UserInfo(source, writeKey))
}

// natsToken creates an API token of role and returns its secret.
func natsToken(t testing.TB, e *engine.Engine, role auth.Role) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	secret, _, err := e.Gate().CreateToken(ctx, "nats-"+string(role), role, time.Time{})
	if err != nil {
		t.Fatalf("create %s token: %v", role, err)
	}
	return secret
}

// natsReader connects with a new API token of role (viewer, editor or
// admin) and the readers' inbox prefix, so it can use JetStream on
// AURUM_OUT.
func natsReader(t testing.TB, e *engine.Engine, role auth.Role) *nats.Conn {
	t.Helper()
	return natsConnect(t, e, nats.Token(natsToken(t, e, role)), nats.CustomInboxPrefix(alog.ReaderInboxPrefix))
}

// natsViolations returns a connect option that collects the connection's
// asynchronous errors, and a function that waits for the server's
// permission violation naming subject.
func natsViolations(t testing.TB) (nats.Option, func(subject string)) {
	errs := make(chan error, 64)
	opt := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	})
	return opt, func(subject string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case err := <-errs:
				if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), subject) {
					return
				}
			case <-deadline:
				t.Fatalf("no permission violation for %s", subject)
			}
		}
	}
}
