package cluster

import (
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const threeNodes = `replicas: 3
partitions: 16
nodes:
  - {name: n1, http: 127.0.0.1:8081, nats: 127.0.0.1:4231, routes: 127.0.0.1:6231, raft: 127.0.0.1:7031}
  - {name: n2, http: 127.0.0.1:8082, nats: 127.0.0.1:4232, routes: 127.0.0.1:6232, raft: 127.0.0.1:7032}
  - {name: n3, http: 127.0.0.1:8083, nats: 127.0.0.1:4233, routes: 127.0.0.1:6233, raft: 127.0.0.1:7033}
`

func TestParseConfigIssueExample(t *testing.T) {
	c, err := ParseConfig([]byte(threeNodes))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{Replicas: 3, Partitions: 16, Nodes: []NodeConfig{
		{Name: "n1", HTTP: "127.0.0.1:8081", NATS: "127.0.0.1:4231", Routes: "127.0.0.1:6231", Raft: "127.0.0.1:7031"},
		{Name: "n2", HTTP: "127.0.0.1:8082", NATS: "127.0.0.1:4232", Routes: "127.0.0.1:6232", Raft: "127.0.0.1:7032"},
		{Name: "n3", HTTP: "127.0.0.1:8083", NATS: "127.0.0.1:4233", Routes: "127.0.0.1:6233", Raft: "127.0.0.1:7033"},
	}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v", c)
	}
	if n, ok := c.Node("n2"); !ok || n.Raft != "127.0.0.1:7032" {
		t.Fatalf("Node(n2) = %+v, %v", n, ok)
	}
}

func TestParseConfig(t *testing.T) {
	node := func(i int) string {
		return strings.NewReplacer("N", string(rune('0'+i))).Replace(
			"  - {name: nN, http: 127.0.0.1:808N, nats: 127.0.0.1:423N, routes: 127.0.0.1:623N, raft: 127.0.0.1:703N}\n")
	}
	nodes := func(k int) string {
		s := "nodes:\n"
		for i := 1; i <= k; i++ {
			s += node(i)
		}
		return s
	}
	for _, tc := range []struct {
		name, file string
		replicas   int // ReplicaCount, when valid
		partitions int
		errs       []string // each must be in the error
	}{
		{name: "defaults of three", file: nodes(3), replicas: 3, partitions: 16},
		{name: "default replicas of two nodes", file: nodes(2), replicas: 2, partitions: 16},
		{name: "default replicas of one node", file: nodes(1), replicas: 1, partitions: 16},
		{name: "default replicas of five nodes", file: nodes(5), replicas: 3, partitions: 16},
		{name: "explicit", file: "replicas: 1\npartitions: 1024\n" + nodes(3), replicas: 1, partitions: 1024},
		{name: "without nats", file: "nodes:\n  - {name: a, http: h:1, raft: h:2}\n  - {name: b, http: h:3, raft: h:4}\n", replicas: 2, partitions: 16},
		{name: "empty", file: "", errs: []string{"empty file"}},
		{name: "not yaml", file: "nodes: [", errs: []string{"cluster: config:"}},
		{name: "unknown field", file: "replica: 3\n" + nodes(3), errs: []string{"field replica not found"}},
		{name: "two documents", file: nodes(3) + "---\n" + nodes(3), errs: []string{"more than one YAML document"}},
		{name: "no nodes", file: "partitions: 4\n", errs: []string{"nodes: none given"}},
		{name: "partitions 0", file: "partitions: 0\n" + nodes(3), errs: []string{"partitions: 0 is not between 1 and 1024"}},
		{name: "partitions 1025", file: "partitions: 1025\n" + nodes(3), errs: []string{"partitions: 1025"}},
		{name: "replicas 0", file: "replicas: 0\n" + nodes(3), errs: []string{"replicas: must be between 1 and 5"}},
		{name: "replicas above nodes", file: "replicas: 3\n" + nodes(2), errs: []string{"replicas: 3 is more than the 2 nodes"}},
		{name: "replicas 6", file: "replicas: 6\n" + nodes(6), errs: []string{"replicas: 6 is not between 1 and 5"}},
		{name: "negative replicas", file: "replicas: -1\n" + nodes(3), errs: []string{"replicas: -1"}},
		{name: "duplicate name", file: nodes(2) + "  - {name: n1, http: h:1, nats: h:2, routes: h:3, raft: h:4}\n",
			errs: []string{"nodes[2] (n1): name: also used by nodes[0]"}},
		{name: "bad name", file: "nodes:\n  - {name: 'n 1', http: h:1, raft: h:2}\n", errs: []string{`nodes[0]: name: "n 1": only letters`}},
		{name: "missing name and raft", file: "nodes:\n  - {http: h:1}\n", errs: []string{"nodes[0]: name: missing", "nodes[0]: raft: address missing"}},
		{name: "shared address", file: "nodes:\n  - {name: a, http: h:1, raft: h:2}\n  - {name: b, http: h:2, raft: h:3}\n",
			errs: []string{"nodes[1] (b): http: address h:2 is also nodes[0] (a) raft"}},
		{name: "no port", file: "nodes:\n  - {name: a, http: localhost, raft: h:2}\n", errs: []string{`nodes[0] (a): http: "localhost" is not host:port`}},
		{name: "port 0", file: "nodes:\n  - {name: a, http: h:0, raft: h:2}\n", errs: []string{"nodes[0] (a): http: \"h:0\": port must be"}},
		{name: "port out of range", file: "nodes:\n  - {name: a, http: h:1, raft: h:70000}\n", errs: []string{"nodes[0] (a): raft:"}},
		{name: "no host", file: "nodes:\n  - {name: a, http: ':1', raft: h:2}\n", errs: []string{"has no host"}},
		{name: "nats on some nodes", file: "nodes:\n  - {name: a, http: h:1, raft: h:2, nats: h:5}\n  - {name: b, http: h:3, raft: h:4}\n",
			errs: []string{"nats: given on 1 of 2 nodes"}},
		{name: "tls for the cluster", file: nodes(2) + "tls: {cert_file: c.pem, key_file: k.pem, ca_file: ca.pem}\n", replicas: 2, partitions: 16},
		{name: "tls per node", file: "nodes:\n  - {name: a, http: h:1, raft: h:2, tls: {cert_file: a.pem, key_file: ak.pem, ca_file: ca.pem}}\n  - {name: b, http: h:3, raft: h:4, tls: {cert_file: b.pem, key_file: bk.pem, ca_file: ca.pem}}\n", replicas: 2, partitions: 16},
		{name: "tls on some nodes", file: "nodes:\n  - {name: a, http: h:1, raft: h:2, tls: {cert_file: a.pem, key_file: ak.pem, ca_file: ca.pem}}\n  - {name: b, http: h:3, raft: h:4}\n",
			errs: []string{"tls: given on 1 of 2 nodes"}},
		{name: "tls without a key", file: nodes(2) + "tls: {cert_file: c.pem, ca_file: ca.pem}\n", errs: []string{"tls: key_file: missing"}},
		{name: "node tls without a ca", file: "tls: {cert_file: c.pem, key_file: k.pem, ca_file: ca.pem}\nnodes:\n  - {name: a, http: h:1, raft: h:2, tls: {cert_file: a.pem, key_file: ak.pem}}\n",
			errs: []string{"nodes[0] (a): tls: ca_file: missing"}},
		{name: "tls unknown field", file: nodes(2) + "tls: {cert: c.pem}\n", errs: []string{"field cert not found"}},
		{name: "every fault at once", file: "partitions: 0\nnodes:\n  - {name: a, http: h:1, raft: h:1}\n",
			errs: []string{"partitions: 0", "raft: address h:1 is also nodes[0] (a) http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.file))
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.ReplicaCount() != tc.replicas || c.Partitions != tc.partitions {
					t.Fatalf("replicas %d partitions %d", c.ReplicaCount(), c.Partitions)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			for _, want := range tc.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// FuzzParseConfig: no input crashes the parser; an accepted file is valid
// and reads back the same after being written out.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(threeNodes))
	f.Add([]byte("nodes:\n  - {name: a, http: h:1, raft: h:2}\n"))
	f.Add([]byte("partitions: 0\nnodes: []\n"))
	f.Add([]byte("replicas: &a 3\npartitions: *a\nnodes: [{name: x, http: '[::1]:1', raft: '[::1]:2'}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "cluster: config") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		if r := c.ReplicaCount(); r < 1 || r > MaxReplicas || r > len(c.Nodes) {
			t.Fatalf("replicas %d of %d nodes", r, len(c.Nodes))
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("written form refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, back) {
			t.Fatalf("round trip: %+v != %+v", c, back)
		}
	})
}
