package engine

// Cluster is this node's view of the cluster; nil means a single node that
// owns every partition and runs every singleton. *cluster.Node satisfies it
// (cmd/aurum passes it; engine does not import package cluster).
type Cluster interface {
	Name() string                       // this node's name (goes into fence claims)
	Owns(p int) (epoch uint64, ok bool) // owner of partition p now (lease-checked), under epoch
	IsLeader() bool                     // runs the singletons
}
