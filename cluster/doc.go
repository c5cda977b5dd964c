// Package cluster is the foundation of Aurum's cluster (issue #11): the
// cluster file (Config), the Raft-replicated control state (membership and
// the partition map with a fencing epoch per ownership, fsm.go), the pure
// rebalancing function (Rebalance) and Node, which runs hashicorp/raft on
// the node's raft address, bootstraps from the Config, keeps liveness from
// the leader, changes membership and lets the engine watch the partition
// map. It is the only importer of github.com/hashicorp/raft.
//
// The engine is not wired to it yet: ARCHITECTURE.md "Cluster" states the
// design, the failure table and what the wiring has to do (in particular
// the fencing check every outbox publish must carry).
package cluster
