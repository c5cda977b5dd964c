package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/aurumcdp/aurum/cluster"
	"github.com/aurumcdp/aurum/engine"
	alog "github.com/aurumcdp/aurum/log"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// clusterFlags are serve's cluster flags, and which of the flags a cluster
// file also sets were given explicitly.
type clusterFlags struct {
	file, node                      string
	httpSet, natsSet, partitionsSet bool
}

const clusterHelp = `

Cluster: --cluster FILE --node NAME runs this process as node NAME of the cluster described in
FILE (YAML, the same file on every node; see ARCHITECTURE.md "Cluster"):

    replicas: 3            # copies of every stream (default 3, or the node count if smaller)
    partitions: 16
    nodes:
      - {name: n1, http: 127.0.0.1:8081, nats: 127.0.0.1:4231, routes: 127.0.0.1:6231, raft: 127.0.0.1:7031}
      - ...

The node's entry gives the HTTP listener (unless --http is given), the NATS client listener
(unless --nats is given), the NATS route listener and the Raft address; its embedded NATS
server joins the others' over their routes into one JetStream cluster, and every stream is
replicated "replicas" times. An append is acknowledged once a majority of its stream's replicas
stored it; --fsync applies to this node's copies ("always": each copy is fsynced before it is
counted). The file's partitions replace --partitions (a different explicit --partitions is
refused). With --nats-url the nodes use that NATS cluster instead of embedded servers: the
file's nats and routes addresses are then not used (they may be left out), and "replicas"
still sets the streams' copies. The Raft state is kept in DATA_DIR/raft. Every node needs the
same master key (--master-key-file or $AURUM_MASTER_KEY) and the same admin token. The routes
are authenticated by a secret derived from the master key. To encrypt them, and the Raft
transport, give the file a tls block (mutual TLS: every node's certificate signed by ca_file
and naming its routes and raft hosts; relative paths are relative to the file):

    tls: {cert_file: node.pem, key_file: node-key.pem, ca_file: ca.pem}

or one per node, in the node's entry (its own certificate). Without it, route and Raft traffic
is plain TCP: keep it on a private network.`

// addClusterFlags registers the cluster flags of serve and the help text.
func addClusterFlags(cmd *cobra.Command, c *clusterFlags) {
	cmd.Long += clusterHelp
	fl := cmd.Flags()
	fl.StringVar(&c.file, "cluster", "", "cluster file (YAML): run as one node of a cluster (with --node)")
	fl.StringVar(&c.node, "node", "", "this node's name in the --cluster file")
}

// noteExplicit records which flags a cluster file also sets were given.
func (c *clusterFlags) noteExplicit(fl *pflag.FlagSet) {
	c.httpSet, c.natsSet, c.partitionsSet = fl.Changed("http"), fl.Changed("nats"), fl.Changed("partitions")
}

// clusterSetup is a node's cluster settings, read from the cluster file,
// and its Raft member once open.
type clusterSetup struct {
	cfg  *cluster.Config
	name string
	tls  *tls.Config // the links between nodes (Raft, routes); nil: plain TCP
	node *cluster.Node
}

// applyClusterFile reads --cluster and sets the listeners, partitions,
// replicas and NATS cluster options of the node named --node. It returns
// nil without --cluster. It touches no file but the cluster file.
func applyClusterFile(f *serveFlags, opts *engine.Options, logger *slog.Logger) (*clusterSetup, error) {
	c := f.cluster
	if c.file == "" {
		if c.node != "" {
			return nil, fmt.Errorf("--node: only with --cluster")
		}
		return nil, nil
	}
	if c.node == "" {
		return nil, fmt.Errorf("--node: required with --cluster (a node name of %s)", c.file)
	}
	cfg, err := cluster.LoadConfig(c.file)
	if err != nil {
		return nil, fmt.Errorf("--cluster: %w", err)
	}
	self, ok := cfg.Node(c.node)
	if !ok {
		return nil, fmt.Errorf("--node %q: not in the nodes of %s", c.node, c.file)
	}
	if c.partitionsSet && f.partitions != cfg.Partitions {
		return nil, fmt.Errorf("--partitions %d: conflicts with partitions: %d in %s (leave --partitions out)", f.partitions, cfg.Partitions, c.file)
	}
	tc, err := cfg.TLSFor(self.Name, filepath.Dir(c.file))
	if err != nil {
		return nil, fmt.Errorf("--cluster %s: node %s: %w", c.file, self.Name, err)
	}
	opts.Partitions = cfg.Partitions
	opts.Replicas = cfg.ReplicaCount()
	// Every node applies every event: a value sealed on one node must
	// open on the others (AURUM_KEYS).
	opts.SharedKeys = true
	if !c.httpSet {
		f.httpAddr = self.HTTP
	}
	switch {
	case f.natsURL != "":
		if self.NATS != "" {
			logger.Info("--nats-url: the nodes use this NATS cluster; the nats and routes addresses of the cluster file are not used", "file", c.file)
		}
	case self.NATS == "":
		return nil, fmt.Errorf("--cluster: the nodes of %s have no nats and routes addresses: give them, or --nats-url (an existing NATS cluster)", c.file)
	case len(cfg.Nodes) == 1:
		// One node: its JetStream runs on its own (clustered JetStream
		// waits for routes to other servers for ever); Raft elects the
		// one voter. Growing it takes a restart with the larger file:
		// a standalone JetStream does not join a cluster.
		if !c.natsSet {
			opts.NATSListen = self.NATS
		}
		logger.Info("--cluster: one node; JetStream runs unclustered (its routes address is not used)", "file", c.file)
	default:
		if !c.natsSet {
			opts.NATSListen = self.NATS
		}
		routes := make([]string, len(cfg.Nodes))
		for i, n := range cfg.Nodes {
			routes[i] = n.Routes
		}
		opts.NATSCluster = &alog.ClusterOptions{ServerName: self.Name, Listen: self.Routes, Routes: routes,
			Secret: routeSecret(opts.MasterKey), TLS: tc}
		if opts.MasterKey == nil {
			logger.Warn("--cluster without a shared master key (--master-key-file or AURUM_MASTER_KEY): NATS routes are not authenticated, and the nodes cannot open each other's data")
		}
	}
	return &clusterSetup{cfg: cfg, name: self.Name, tls: tc}, nil
}

// open starts the node's Raft member in DATA_DIR/raft. Applied reads the
// engine's applied position once engine holds it (every node applies the
// whole log, so every partition's position is the engine's).
func (s *clusterSetup) open(dataDir string, engine *atomic.Pointer[engine.Engine], logger *slog.Logger) error {
	n, err := cluster.Open(cluster.Options{
		Config: s.cfg,
		Name:   s.name,
		Dir:    filepath.Join(dataDir, "raft"),
		TLS:    s.tls,
		Applied: func(int) uint64 {
			if e := engine.Load(); e != nil {
				return e.AppliedSeq()
			}
			return 0
		},
		Logger: logger,
	})
	if err != nil {
		return fmt.Errorf("--cluster: %w", err)
	}
	s.node = n
	return nil
}

// close stops the Raft member (after the engine: see runServe).
func (s *clusterSetup) close(logger *slog.Logger) {
	if err := s.node.Close(); err != nil {
		logger.Error("close cluster node", "err", err)
	}
}

// routeSecret is the password of the NATS routes between the nodes,
// derived from the master key they share (HMAC-SHA256 under a label of its
// own, so it reveals nothing of the key): a server without it cannot join
// the cluster. "" without a master key.
func routeSecret(masterKey []byte) string {
	if len(masterKey) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("aurum/nats-route/v1"))
	return hex.EncodeToString(m.Sum(nil))
}
