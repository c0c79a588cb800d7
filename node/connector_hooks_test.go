package node

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// ProposeForTest proposes an event as the node does for its own writes,
// for tests of what the node does with events no RPC writes yet.
func ProposeForTest(ctx context.Context, n *Node, ev proto.Message) (uint64, error) {
	w, err := n.proposeAs(ctx, n.nodeActor(), "", ev)
	return w.GetIndex(), err
}
