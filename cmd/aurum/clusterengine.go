package main

import (
	"github.com/aurumcdp/aurum/cluster"
	"github.com/aurumcdp/aurum/engine"
)

// A *cluster.Node is the engine's view of the cluster as it is: serve
// --cluster hands its node to engine.Options.Cluster.
var _ engine.Cluster = (*cluster.Node)(nil)
