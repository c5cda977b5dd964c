package log

// A clustered log: the embedded server joins a NATS cluster with clustered
// JetStream (Options.Cluster), or Options.URL names a clustered deployment,
// and every Aurum stream has Options.Replicas copies. JetStream's own Raft
// replicates each stream: an append is acknowledged once a majority of the
// stream's replicas stored it. Options.Fsync applies to every replica of
// this node's server (see ARCHITECTURE.md "Cluster" for what it does and
// does not protect against).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterServerOptions adds the cluster block (name, route listener,
// routes) to the embedded server's options.
func clusterServerOptions(sopts *server.Options, c *ClusterOptions) error {
	host, port, err := splitListen(c.Listen)
	if err != nil {
		return fmt.Errorf("log: cluster listen: %w", err)
	}
	sopts.Cluster = server.ClusterOpts{
		Name: c.Name,
		Host: host,
		Port: port,
		// Keep retrying the routes to nodes not up yet: a cluster's nodes
		// start in any order.
		ConnectRetries: -1,
	}
	urls := make([]string, len(c.Routes))
	for i, r := range c.Routes {
		h, p, err := net.SplitHostPort(r)
		if err != nil {
			return fmt.Errorf("log: cluster route %q: %w", r, err)
		}
		u := url.URL{Scheme: "nats-route", Host: net.JoinHostPort(h, p)}
		if c.Secret != "" {
			u.User = url.UserPassword(RouteUser, c.Secret)
		}
		urls[i] = u.String()
	}
	if c.Secret != "" {
		sopts.Cluster.Username, sopts.Cluster.Password = RouteUser, c.Secret
	}
	if c.TLS != nil {
		sopts.Cluster.TLSConfig, sopts.Cluster.TLSTimeout = c.TLS, routeTLSTimeout
	}
	sopts.Routes = server.RoutesFromStr(strings.Join(urls, ","))
	if len(sopts.Routes) != len(c.Routes) {
		return fmt.Errorf("log: cluster routes %v: not all parse as URLs", c.Routes)
	}
	return nil
}

// routeTLSTimeout bounds a route's TLS handshake (seconds).
const routeTLSTimeout = 2

// Backoff of createStreams between attempts.
const (
	streamRetryMin = 100 * time.Millisecond
	streamRetryMax = 2 * time.Second
	// streamAttemptMin is the first attempt's timeout.
	streamAttemptMin = time.Second
	// streamWaitLog is how often a wait for the cluster is logged.
	streamWaitLog = 10 * time.Second
)

// createStreams creates or updates every Aurum stream. On a cluster the
// JetStream meta group may have no leader yet, or too few peers may be up
// to place Options.Replicas copies: those errors are retried with backoff
// until the streams exist, Options.ClusterWait passes or ctx ends. Other
// errors (a configuration the server refuses) fail at once.
func (l *Log) createStreams(parent context.Context) error {
	return l.ensureStreams(parent, l.streamConfigs())
}

// ensureStreams creates or updates the streams of cfgs, waiting for the
// cluster as createStreams does.
func (l *Log) ensureStreams(parent context.Context, cfgs []jetstream.StreamConfig) error {
	ctx, cancel := context.WithTimeout(parent, l.opts.ClusterWait)
	defer cancel()
	start := time.Now()
	lastLog := start
	for _, cfg := range cfgs {
		wait, attemptTimeout := streamRetryMin, min(streamAttemptMin, l.opts.RequestTimeout)
		for attempt := 1; ; attempt++ {
			// A create racing another node's create of the same stream
			// may get no answer: a short first timeout, growing up to
			// RequestTimeout for a slow cluster.
			actx, acancel := context.WithTimeout(ctx, attemptTimeout)
			attemptTimeout = min(2*attemptTimeout, l.opts.RequestTimeout)
			var err error
			if cfg.Name == StreamIngest {
				err = l.ensureIngest(actx, cfg)
			} else {
				_, err = l.js.CreateOrUpdateStream(actx, cfg)
			}
			acancel()
			if err == nil {
				break
			}
			noQuorum := func() error {
				if parent.Err() != nil { // the caller gave up (e.g. SIGTERM)
					return fmt.Errorf("log: stream %s: %w (last error: %v)", cfg.Name, parent.Err(), err)
				}
				return fmt.Errorf("log: stream %s: no JetStream quorum to place %d replica(s) after %v (are a majority of the cluster's nodes up?): %w",
					cfg.Name, cfg.Replicas, time.Since(start).Round(time.Millisecond), err)
			}
			if ctx.Err() != nil {
				return noQuorum()
			}
			if !retryableStreamError(err) {
				return fmt.Errorf("log: stream %s: %w", cfg.Name, err)
			}
			if time.Since(lastLog) >= streamWaitLog || attempt == 1 {
				lastLog = time.Now()
				l.logger.Info("log: waiting for the JetStream cluster", "stream", cfg.Name, "replicas", cfg.Replicas, "err", err)
			}
			select {
			case <-ctx.Done():
				return noQuorum()
			case <-time.After(wait):
			}
			wait = min(2*wait, streamRetryMax)
		}
	}
	return nil
}

// JetStream API error codes that mean "not yet" on a cluster that is
// forming or lost a peer (nats-server's jetstream_errors_generated.go).
const (
	jsErrNoPeers       = 10005 // no suitable peers for placement
	jsErrClusterNotAv  = 10008 // JetStream system temporarily unavailable
	jsErrNotLeader     = 10009 // JetStream cluster can not handle request
	jsErrInsufficient  = 10023 // insufficient resources
	jsErrStreamNameUse = 10058 // a concurrent create by another node won the race
)

// retryableStreamError reports whether a CreateOrUpdateStream error may
// pass once the cluster has a meta leader and enough peers.
func retryableStreamError(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsErrNoPeers, jsErrClusterNotAv, jsErrNotLeader, jsErrInsufficient, jsErrStreamNameUse:
			return true
		}
		return apiErr.Code == 503 || apiErr.Code == 408 || apiErr.Code == 504
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// Current reports whether this node's embedded JetStream server is
// current: it knows a meta leader and every stream and consumer replica it
// holds has caught up with its leader (nats-server's healthz). A node
// restarted into a cluster is not current until its replicas caught up;
// until then a second node's loss may leave a stream without a quorum.
// Nil when the server is not embedded or not clustered.
func (l *Log) Current() error {
	if l.srv == nil || l.opts.Cluster == nil {
		return nil
	}
	h := l.srv.Healthz(nil)
	if h.Status == "ok" {
		return nil
	}
	return fmt.Errorf("log: JetStream not current (catching up): %s", h.Error)
}
