package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aurumcdp/aurum/api"
	"github.com/aurumcdp/aurum/cluster"
	"github.com/aurumcdp/aurum/engine"
	"github.com/aurumcdp/aurum/internal/testnode"
)

// fakeCluster is a cluster of which this node is the leader or not.
type fakeCluster struct {
	mu       sync.Mutex
	leader   bool
	nodes    []cluster.NodeStatus
	noMap    bool  // a node just restarted: no map restored yet
	proposal error // what committing a change gives (nil: it commits)
}

func (f *fakeCluster) Status() cluster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := cluster.Status{Leader: "n2", Nodes: append([]cluster.NodeStatus{}, f.nodes...),
		Partitions: []cluster.PartitionStatus{{ID: 0, Owner: "n1", Standbys: []string{"n2"}, Epoch: 3, Applied: 42}}}
	if f.noMap {
		st.Partitions = []cluster.PartitionStatus{}
	}
	if f.leader {
		st.Leader = "n1"
	}
	return st
}

func (f *fakeCluster) AddNode(nc cluster.NodeConfig) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leader {
		return fmt.Errorf("%w (the leader is %q)", cluster.ErrNotLeader, "n2")
	}
	for _, n := range f.nodes {
		if n.Name == nc.Name {
			return fmt.Errorf("%w: %s", cluster.ErrNodeExists, nc.Name)
		}
	}
	if f.proposal != nil {
		return f.proposal
	}
	f.nodes = append(f.nodes, cluster.NodeStatus{Name: nc.Name, HTTP: nc.HTTP, State: "up", Raft: "follower"})
	return nil
}

func (f *fakeCluster) RemoveNode(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leader {
		return fmt.Errorf("%w (the leader is %q)", cluster.ErrNotLeader, "n2")
	}
	for i, n := range f.nodes {
		if n.Name == name {
			f.nodes = append(f.nodes[:i], f.nodes[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("%w: %s", cluster.ErrUnknownNode, name)
}

func TestClusterAPI(t *testing.T) {
	fc := &fakeCluster{nodes: []cluster.NodeStatus{
		{Name: "n1", HTTP: "127.0.0.1:8081", State: "up", Raft: "follower"},
		{Name: "n2", HTTP: "127.0.0.1:8082", State: "up", Raft: "leader"},
	}}
	n := testnode.Start(t, testnode.Options{
		Engine:     engine.Options{MasterKey: bytes.Repeat([]byte{7}, 32), Partitions: 2},
		API:        &api.Options{RequestTimeout: 20 * time.Second},
		AdminToken: adminToken,
		Cluster:    fc,
	})
	s := &testServer{t: t, e: n.Engine, srv: n.API, URL: n.URL}

	r := s.do(req{method: "GET", path: "/v1/cluster", admin: true})
	var st cluster.Status
	if r.code != http.StatusOK || json.Unmarshal(r.body, &st) != nil {
		t.Fatalf("GET /v1/cluster: %s", r)
	}
	if st.Leader != "n2" || len(st.Nodes) != 2 || len(st.Partitions) != 1 || st.Partitions[0].Epoch != 3 || st.Partitions[0].Applied != 42 {
		t.Fatalf("status %+v", st)
	}

	// A follower names the leader and its HTTP address.
	r = s.do(req{method: "POST", path: "/v1/cluster/nodes", admin: true, body: jsonBody(t, map[string]string{"name": "n3", "http": "127.0.0.1:8083", "raft": "127.0.0.1:7033"})})
	var nl struct {
		Error, Leader string
		LeaderHTTP    string `json:"leader_http"`
	}
	if r.code != http.StatusConflict || json.Unmarshal(r.body, &nl) != nil || nl.Leader != "n2" || nl.LeaderHTTP != "127.0.0.1:8082" || nl.Error == "" {
		t.Fatalf("add on a follower: %s", r)
	}

	fc.mu.Lock()
	fc.leader = true
	fc.mu.Unlock()
	for _, tc := range []struct {
		name  string
		req   req
		code  int
		field string
	}{
		{"missing raft", req{method: "POST", path: "/v1/cluster/nodes", body: jsonBody(t, map[string]string{"name": "n3", "http": "h:1"})}, 400, "raft"},
		{"missing name", req{method: "POST", path: "/v1/cluster/nodes", body: jsonBody(t, map[string]string{"http": "h:1", "raft": "h:2"})}, 400, "name"},
		{"unknown field", req{method: "POST", path: "/v1/cluster/nodes", body: []byte(`{"name":"n3","http":"h:1","raft":"h:2","bogus":1}`)}, 400, "bogus"},
		{"exists", req{method: "POST", path: "/v1/cluster/nodes", body: jsonBody(t, map[string]string{"name": "n1", "http": "h:1", "raft": "h:2"})}, 409, "name"},
		{"remove unknown", req{method: "DELETE", path: "/v1/cluster/nodes/n9"}, 404, "name"},
	} {
		tc.req.admin = true
		r := s.do(tc.req)
		if r.code != tc.code {
			t.Errorf("%s: %s, want %d", tc.name, r, tc.code)
			continue
		}
		if _, field := r.errorBody(t); field != tc.field {
			t.Errorf("%s: field %q, want %q", tc.name, field, tc.field)
		}
	}
	// A change Raft could not commit (leadership lost, a timeout) is the
	// cluster's momentary state, not a bad request: 503, retry.
	fc.mu.Lock()
	fc.proposal = fmt.Errorf("cluster: propose: %w: leadership lost while committing log", cluster.ErrUnavailable)
	fc.mu.Unlock()
	r = s.do(req{method: "POST", path: "/v1/cluster/nodes", admin: true, body: jsonBody(t, map[string]string{"name": "n3", "http": "127.0.0.1:8083", "raft": "127.0.0.1:7033"})})
	if msg, _ := r.errorBody(t); r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(msg, "no Raft leader") {
		t.Fatalf("add without a leader to commit it: %s", r)
	}
	fc.mu.Lock()
	fc.proposal = nil
	fc.mu.Unlock()
	r = s.do(req{method: "POST", path: "/v1/cluster/nodes", admin: true, body: jsonBody(t, map[string]string{"name": "n3", "http": "127.0.0.1:8083", "raft": "127.0.0.1:7033"})})
	if r.code != http.StatusCreated || json.Unmarshal(r.body, &st) != nil || len(st.Nodes) != 3 {
		t.Fatalf("add on the leader: %s", r)
	}
	r = s.do(req{method: "DELETE", path: "/v1/cluster/nodes/n3", admin: true})
	if r.code != http.StatusOK || json.Unmarshal(r.body, &st) != nil || len(st.Nodes) != 2 {
		t.Fatalf("remove on the leader: %s", r)
	}

	// A node that has not restored the map yet says so, instead of an
	// empty map.
	fc.mu.Lock()
	fc.noMap = true
	fc.mu.Unlock()
	r = s.do(req{method: "GET", path: "/v1/cluster", admin: true})
	if msg, _ := r.errorBody(t); r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(msg, "catching up") {
		t.Fatalf("GET /v1/cluster without a map: %s", r)
	}
}

func TestClusterAPIWithoutCluster(t *testing.T) {
	s := newTestServer(t)
	for _, r := range []req{
		{method: "GET", path: "/v1/cluster", admin: true},
		{method: "POST", path: "/v1/cluster/nodes", admin: true, body: []byte(`{}`)},
		{method: "DELETE", path: "/v1/cluster/nodes/n1", admin: true},
	} {
		got := s.do(r)
		if got.code != http.StatusNotFound {
			t.Errorf("%s %s: %s, want 404", r.method, r.path, got)
			continue
		}
		if msg, _ := got.errorBody(t); !bytes.Contains([]byte(msg), []byte("--cluster")) {
			t.Errorf("%s %s: %q does not say why", r.method, r.path, msg)
		}
	}
}
