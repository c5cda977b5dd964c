package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Limits of the cluster file.
const (
	// MaxPartitions bounds Config.Partitions (partition ids are u16 in the
	// store's keys; 1024 keeps the map small enough for one Raft entry).
	MaxPartitions = 1024
	// DefaultPartitions is the partition count of a file that names none
	// (the single-node default of --partitions).
	DefaultPartitions = 16
	// DefaultReplicas is the replica count of a file that names none,
	// lowered to the node count when there are fewer nodes.
	DefaultReplicas = 3
	// MaxReplicas is JetStream's limit on stream replicas.
	MaxReplicas = 5
	// MaxNodes bounds the node list.
	MaxNodes   = 64
	maxNameLen = 64
	maxFileLen = 1 << 20
)

// Config is the cluster file every node is given (YAML):
//
//	replicas: 3            # JetStream stream replicas and partition copies
//	partitions: 16
//	nodes:
//	  - {name: n1, http: 127.0.0.1:8081, nats: 127.0.0.1:4231, routes: 127.0.0.1:6231, raft: 127.0.0.1:7031}
//	tls: {cert_file: node.pem, key_file: node-key.pem, ca_file: ca.pem}   # optional
//
// Replicas 0 means the default: DefaultReplicas, or the node count if
// smaller (Replicas()). A partition has one owner and Replicas()-1
// standbys. TLS, when given (for the whole cluster, or per node, which
// overrides it), encrypts and mutually authenticates the links between
// nodes: the NATS routes and the Raft transport (see TLSFor).
type Config struct {
	Replicas   int          `yaml:"replicas,omitempty"`
	Partitions int          `yaml:"partitions"`
	Nodes      []NodeConfig `yaml:"nodes"`
	TLS        *TLSFiles    `yaml:"tls,omitempty"`
}

// NodeConfig is one node of the cluster file. Name and the HTTP and Raft
// addresses are required; NATS and Routes (the embedded server's client and
// cluster listeners) are empty when the nodes use an existing NATS cluster
// (--nats-url), and then empty on every node.
type NodeConfig struct {
	Name   string `yaml:"name"`
	HTTP   string `yaml:"http"`
	NATS   string `yaml:"nats,omitempty"`
	Routes string `yaml:"routes,omitempty"`
	Raft   string `yaml:"raft"`
	// TLS overrides Config.TLS for this node (its own certificate). It is
	// local configuration: not part of the replicated map.
	TLS *TLSFiles `yaml:"tls,omitempty"`
}

// LoadConfig reads and parses the cluster file at path.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cluster: config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("cluster: config %s: %w", path, err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return c, nil
}

// ParseConfig parses a cluster file: unknown fields and a second document
// are refused, an absent partitions field is DefaultPartitions, and the
// result is Validated.
func ParseConfig(data []byte) (*Config, error) {
	if len(data) > maxFileLen {
		return nil, fmt.Errorf("cluster: config: larger than %d bytes", maxFileLen)
	}
	var raw struct {
		Replicas   *int         `yaml:"replicas"`
		Partitions *int         `yaml:"partitions"`
		Nodes      []NodeConfig `yaml:"nodes"`
		TLS        *TLSFiles    `yaml:"tls"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("cluster: config: empty file")
		}
		return nil, fmt.Errorf("cluster: config: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("cluster: config: more than one YAML document")
	}
	c := &Config{Partitions: DefaultPartitions, Nodes: raw.Nodes, TLS: raw.TLS}
	if raw.Partitions != nil {
		c.Partitions = *raw.Partitions
	}
	if raw.Replicas != nil {
		if *raw.Replicas == 0 {
			return nil, errors.New("cluster: config: replicas: must be between 1 and 5 (leave it out for the default)")
		}
		c.Replicas = *raw.Replicas
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// ReplicaCount is the effective replica count: Config.Replicas, or when 0
// DefaultReplicas lowered to the node count.
func (c *Config) ReplicaCount() int {
	if c.Replicas != 0 {
		return c.Replicas
	}
	return min(DefaultReplicas, len(c.Nodes))
}

// Node returns the node named name.
func (c *Config) Node(name string) (NodeConfig, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return NodeConfig{}, false
}

// Validate checks the file: partitions in [1, MaxPartitions], replicas 0
// (default) or in [1, min(MaxReplicas, node count)], 1 to MaxNodes nodes
// with unique valid names, every address host:port with a port in
// [1, 65535] and used once in the whole file, NATS and Routes given on
// every node or on none, TLS with its three files (cluster-wide, or on every
// node without it). All the faults are returned, each naming its field and
// node.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster: config: "+format, args...))
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		bad("partitions: %d is not between 1 and %d", c.Partitions, MaxPartitions)
	}
	switch {
	case len(c.Nodes) == 0:
		bad("nodes: none given")
	case len(c.Nodes) > MaxNodes:
		bad("nodes: %d given, at most %d", len(c.Nodes), MaxNodes)
	}
	if c.Replicas < 0 || c.Replicas > MaxReplicas {
		bad("replicas: %d is not between 1 and %d", c.Replicas, MaxReplicas)
	} else if len(c.Nodes) > 0 && c.Replicas > len(c.Nodes) {
		bad("replicas: %d is more than the %d nodes", c.Replicas, len(c.Nodes))
	}
	if c.TLS != nil {
		if err := c.TLS.check(); err != nil {
			bad("tls: %v", err)
		}
	}
	names := map[string]int{}
	addrs := map[string]string{} // address → where it is used
	withTLS := 0
	withNATS, withRoutes := 0, 0
	for i, n := range c.Nodes {
		where := fmt.Sprintf("nodes[%d]", i)
		if err := checkName(n.Name); err != nil {
			bad("%s: name: %v", where, err)
		} else {
			where = fmt.Sprintf("nodes[%d] (%s)", i, n.Name)
			if j, dup := names[n.Name]; dup {
				bad("%s: name: also used by nodes[%d]", where, j)
			}
			names[n.Name] = i
		}
		for _, f := range []struct {
			field, addr string
			required    bool
		}{{"http", n.HTTP, true}, {"nats", n.NATS, false}, {"routes", n.Routes, false}, {"raft", n.Raft, true}} {
			if f.addr == "" {
				if f.required {
					bad("%s: %s: address missing", where, f.field)
				}
				continue
			}
			if err := checkAddr(f.addr); err != nil {
				bad("%s: %s: %v", where, f.field, err)
				continue
			}
			if other, dup := addrs[f.addr]; dup {
				bad("%s: %s: address %s is also %s", where, f.field, f.addr, other)
				continue
			}
			addrs[f.addr] = where + " " + f.field
		}
		if n.TLS != nil {
			withTLS++
			if err := n.TLS.check(); err != nil {
				bad("%s: tls: %v", where, err)
			}
		}
		if n.NATS != "" {
			withNATS++
		}
		if n.Routes != "" {
			withRoutes++
		}
	}
	if withNATS != 0 && withNATS != len(c.Nodes) {
		bad("nats: given on %d of %d nodes (give it on every node, or on none with --nats-url)", withNATS, len(c.Nodes))
	}
	if c.TLS == nil && withTLS != 0 && withTLS != len(c.Nodes) {
		bad("tls: given on %d of %d nodes (give it on every node, or once for the cluster: a node without it could not reach the others)", withTLS, len(c.Nodes))
	}
	if withRoutes != 0 && withRoutes != len(c.Nodes) {
		bad("routes: given on %d of %d nodes (give it on every node, or on none with --nats-url)", withRoutes, len(c.Nodes))
	}
	return errors.Join(errs...)
}

// checkName accepts 1 to 64 of [A-Za-z0-9_-]: a name is a Raft server id,
// a NATS server name and a path element.
func checkName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%q: only letters, digits, '-' and '_'", s)
		}
	}
	return nil
}

func checkAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if host == "" {
		return fmt.Errorf("%q has no host (other nodes dial it)", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port must be a number between 1 and 65535", s)
	}
	return nil
}
