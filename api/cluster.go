package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/aurumcdp/aurum/cluster"
)

// Cluster is this node's membership of a cluster (package cluster's
// *Node). Services.Cluster is nil when serve runs without --cluster.
type Cluster interface {
	Status() cluster.Status
	AddNode(nc cluster.NodeConfig) error
	RemoveNode(name string) error
}

// notLeaderBody answers a membership change sent to a follower: the CLI
// sends it again to the leader's HTTP address.
type notLeaderBody struct {
	Error      string `json:"error"`
	Leader     string `json:"leader"`
	LeaderHTTP string `json:"leader_http"`
}

func (s *Server) clusterOr404(w http.ResponseWriter) bool {
	if s.svc.Cluster == nil {
		writeError(w, http.StatusNotFound, "", "this node runs without --cluster: there is no cluster to show or change")
		return false
	}
	return true
}

func (s *Server) handleClusterStatus(w http.ResponseWriter, _ *http.Request) {
	if !s.clusterOr404(w) {
		return
	}
	st := s.svc.Cluster.Status()
	if len(st.Partitions) == 0 {
		// A node just restarted has not restored the map from Raft yet (or
		// the cluster has not written its first one): an empty map would
		// read as "no partitions".
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "catching up: this node has no partition map yet (it is restoring the cluster state, or no leader has written the first map); retry, or ask another node")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleClusterAdd(w http.ResponseWriter, r *http.Request) {
	var nc cluster.NodeConfig
	if !decodeJSON(w, r, 64<<10, &nc, false) || !s.clusterOr404(w) {
		return
	}
	for _, f := range []struct{ name, v string }{{"name", nc.Name}, {"http", nc.HTTP}, {"raft", nc.Raft}} {
		if strings.TrimSpace(f.v) == "" {
			writeError(w, http.StatusBadRequest, f.name, f.name+" is required")
			return
		}
	}
	s.clusterChange(w, nc.Name, s.svc.Cluster.AddNode(nc), http.StatusCreated)
}

func (s *Server) handleClusterRemove(w http.ResponseWriter, r *http.Request) {
	if !s.clusterOr404(w) {
		return
	}
	name := r.PathValue("name")
	s.clusterChange(w, name, s.svc.Cluster.RemoveNode(name), http.StatusOK)
}

// clusterChange answers a membership change with the map that results
// (or why there is none).
func (s *Server) clusterChange(w http.ResponseWriter, name string, err error, code int) {
	switch {
	case err == nil:
		writeJSON(w, code, s.svc.Cluster.Status())
	case errors.Is(err, cluster.ErrNotLeader):
		st := s.svc.Cluster.Status()
		b := notLeaderBody{Error: "this node is not the Raft leader: send membership changes to the leader", Leader: st.Leader}
		for _, n := range st.Nodes {
			if n.Name == st.Leader {
				b.LeaderHTTP = n.HTTP
			}
		}
		writeJSON(w, http.StatusConflict, b)
	case errors.Is(err, cluster.ErrUnknownNode):
		writeError(w, http.StatusNotFound, "name", "no node named "+name+" in the cluster")
	case errors.Is(err, cluster.ErrNodeExists):
		writeError(w, http.StatusConflict, "name", "a node named "+name+" is already in the cluster")
	case errors.Is(err, cluster.ErrNotInitialised):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "the cluster has no partition map yet; retry")
	case errors.Is(err, cluster.ErrUnavailable):
		s.opts.Logger.Warn("api: cluster change not committed", "node", name, "err", err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "the change was not committed: the cluster has no Raft leader that could commit it now (an election or a timeout); retry ("+err.Error()+")")
	default:
		s.opts.Logger.Error("api: cluster change", "node", name, "err", err)
		writeError(w, http.StatusBadRequest, "", err.Error())
	}
}
