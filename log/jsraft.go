package log

import (
	"time"
	_ "unsafe" // go:linkname

	_ "github.com/nats-io/nats-server/v2/server" // the variables below
)

// JetStream's own Raft (every replicated stream, consumer and the meta
// group) elects a new leader when a follower has heard no heartbeat (one a
// second) for a random 4-9 s: after a SIGKILL of the node leading
// AURUM_LOG or AURUM_OUT, nothing could be appended or published for that
// long, most of a cluster failover (measured: bench/RESULTS.md "Issue #11").
// nats-server 2.15.2 has no option for it, so these are its package
// variables, set once here before any server of this process starts
// (init: no goroutine reads them yet). A follower now campaigns after
// 2-3.5 s of silence: two missed heartbeats at least, so a busy node is not
// voted out for one late beat; a single server (no cluster) has no Raft
// groups and is unaffected. A nats-server upgrade that renames them fails
// the build at link time, loudly.
//
//go:linkname jsMinElectionTimeout github.com/nats-io/nats-server/v2/server.minElectionTimeout
var jsMinElectionTimeout time.Duration

//go:linkname jsMaxElectionTimeout github.com/nats-io/nats-server/v2/server.maxElectionTimeout
var jsMaxElectionTimeout time.Duration

// JetStream Raft election timeouts of this process's embedded servers.
const (
	JetStreamElectionMin = 2 * time.Second
	JetStreamElectionMax = 3500 * time.Millisecond
)

func init() {
	jsMinElectionTimeout, jsMaxElectionTimeout = JetStreamElectionMin, JetStreamElectionMax
}
