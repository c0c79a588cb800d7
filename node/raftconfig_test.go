package node_test

import (
	"testing"

	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// A node whose RaftConfig is left zero runs on the defaults instead of
// handing raft zero timeouts (which raft refuses).
func TestRaftZeroConfigStarts(t *testing.T) {
	c := nodetest.Start(t, 1, nodetest.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Raft = node.RaftConfig{}
	}})
	if _, err := c.Client(0).Identities.Add(ctxT(t), &rpc.AddIdentityRequest{Kind: "user", Name: "zero"}); err != nil {
		t.Fatal(err)
	}
}
