package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// consumePullHeartbeat is the idle heartbeat asked of the server for a
// pending pull request; two missed ones mean the request is lost (a server
// restart, a lost route) and the consumer is re-opened.
const consumePullHeartbeat = 5 * time.Second

// errPullExpired reports a pull request that ended without a message.
var errPullExpired = errors.New("log: pull request expired")

// puller issues the pull requests of one ConsumeDurable call, one message
// at a time, on an inbox subscription the call owns.
//
// Owning the subscription is what lets a stopped call leave nothing behind:
// close unsubscribes and flushes before ConsumeDurable returns, so the
// server has dropped the call's pending pull request (it checks the reply
// subject's interest before it delivers). A request left pending on a dead
// inbox would take the next message with it, and that message would come
// back only after AckWait. (nats.go's Next unsubscribes its fetch inbox in
// a goroutine after it has returned, which is that race.)
type puller struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	subject string // $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>
	request []byte
	timeout time.Duration // flush at close
}

func (l *Log) newPuller(stream, durable string) (*puller, error) {
	sub, err := l.nc.SubscribeSync(l.nc.NewInbox())
	if err != nil {
		return nil, fmt.Errorf("pull inbox: %w", err)
	}
	req, err := json.Marshal(struct {
		Batch     int           `json:"batch"`
		Expires   time.Duration `json:"expires"`
		Heartbeat time.Duration `json:"idle_heartbeat"`
	}{1, consumeFetchWait, consumePullHeartbeat})
	if err != nil {
		return nil, err
	}
	return &puller{
		nc:      l.nc,
		sub:     sub,
		subject: "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + durable,
		request: req,
		timeout: l.opts.RequestTimeout,
	}, nil
}

// next asks for one message and waits for it. It returns errPullExpired
// when the request ended empty, ctx's error when ctx ended, and any other
// error when the consumer must be re-opened (deleted, heartbeats missed).
func (p *puller) next(ctx context.Context) (*nats.Msg, error) {
	if err := p.nc.PublishRequest(p.subject, p.sub.Subject, p.request); err != nil {
		return nil, fmt.Errorf("pull request: %w", err)
	}
	for {
		// Anything from the server (a heartbeat included) within two
		// heartbeats; the request's own end comes as a 408 status.
		wctx, cancel := context.WithTimeout(ctx, 2*consumePullHeartbeat+time.Second)
		m, err := p.sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, errors.New("pull request: no heartbeat from the server")
			}
			return nil, fmt.Errorf("pull request: %w", err)
		}
		status := m.Header.Get("Status")
		switch {
		case status == "" && len(m.Reply) > 0:
			return m, nil
		case status == "100": // idle heartbeat (or flow control)
			if m.Reply != "" {
				_ = m.Respond(nil)
			}
			continue
		case status == "408" || status == "404":
			return nil, errPullExpired
		case status == "":
			return nil, errors.New("pull request: reply without an ack subject")
		default:
			return nil, fmt.Errorf("pull request: status %s %s", status, m.Header.Get("Description"))
		}
	}
}

// more asks for up to n further messages that are ready now (a no-wait
// request) and returns those that came: fewer than n, or none, when the
// consumer has no more (its end comes as a 404 or 408 status).
func (p *puller) more(ctx context.Context, n int) ([]*nats.Msg, error) {
	req, err := json.Marshal(struct {
		Batch  int  `json:"batch"`
		NoWait bool `json:"no_wait"`
	}{n, true})
	if err != nil {
		return nil, err
	}
	if err := p.nc.PublishRequest(p.subject, p.sub.Subject, req); err != nil {
		return nil, fmt.Errorf("pull request: %w", err)
	}
	var out []*nats.Msg
	for len(out) < n {
		wctx, cancel := context.WithTimeout(ctx, p.timeout)
		m, err := p.sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			return out, fmt.Errorf("pull request: %w", err)
		}
		status := m.Header.Get("Status")
		switch {
		case status == "" && len(m.Reply) > 0:
			out = append(out, m)
		case status == "100":
			if m.Reply != "" {
				_ = m.Respond(nil)
			}
		case status == "404" || status == "408" || status == "409":
			return out, nil
		default:
			return out, fmt.Errorf("pull request: status %s %s", status, m.Header.Get("Description"))
		}
	}
	return out, nil
}

// close unsubscribes the inbox and waits until the server has seen it.
func (p *puller) close() {
	_ = p.sub.Unsubscribe()
	_ = p.nc.FlushTimeout(p.timeout)
}
