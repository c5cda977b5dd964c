package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// TestUnavailable: hashicorp/raft's transient errors become ErrUnavailable
// (the API answers 503, retry); anything else is left as it is (400).
func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{raft.ErrLeadershipLost, true},
		{raft.ErrNotLeader, true},
		{raft.ErrEnqueueTimeout, true},
		{raft.ErrRaftShutdown, true},
		{fmt.Errorf("apply: %w", raft.ErrLeadershipTransferInProgress), true},
		{ErrUnknownNode, false},
		{errors.New("cluster: add: name: bad"), false},
	} {
		got := unavailable(tc.err)
		if errors.Is(got, ErrUnavailable) != tc.want || !errors.Is(got, tc.err) {
			t.Errorf("unavailable(%v) = %v, want ErrUnavailable %v and the cause kept", tc.err, got, tc.want)
		}
	}
}
