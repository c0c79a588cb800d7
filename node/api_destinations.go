package node

import (
	"context"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

// destinationsAPI serves the destinations of SPEC section 11.
type destinationsAPI struct {
	rpc.UnimplementedDestinationsServer
	n *Node
}

// Add proposes the destination in its normalized form (tcp and kubernetes
// always mesh), so that the event says what the state holds. Whether the
// connector is a registered target is decided by the state machine, on
// the log's order, not on this node's view.
func (a *destinationsAPI) Add(ctx context.Context, req *rpc.AddDestinationRequest) (*rpc.WriteResponse, error) {
	return a.n.propose(ctx, events.NormalizeDestination(&events.DestinationAdded{
		Name: req.GetName(), Kind: req.GetKind(), Addr: req.GetAddr(), Connector: req.GetConnector(),
		Mesh: req.GetMesh(), Labels: req.GetLabels(), Database: req.GetDatabase(),
	}))
}

func (a *destinationsAPI) Remove(ctx context.Context, req *rpc.RemoveDestinationRequest) (*rpc.WriteResponse, error) {
	return a.n.propose(ctx, &events.DestinationRemoved{Name: req.GetName()})
}

// List returns every destination with its connector's status as the log
// records it: connected, disconnected or revoked (also when the connector's
// key is gone), empty for a destination without a connector.
func (a *destinationsAPI) List(context.Context, *rpc.ListDestinationsRequest) (*rpc.ListDestinationsResponse, error) {
	dests, err := a.n.fsm.Destinations()
	if err != nil {
		return nil, stateErr(err)
	}
	keys, err := a.n.fsm.TargetKeys()
	if err != nil {
		return nil, stateErr(err)
	}
	connector := make(map[string]string, len(keys))
	for _, k := range keys {
		switch {
		case k.GetRevoked():
			connector[k.GetTarget()] = "revoked"
		case k.GetConnected():
			connector[k.GetTarget()] = "connected"
		default:
			connector[k.GetTarget()] = "disconnected"
		}
	}
	resp := &rpc.ListDestinationsResponse{}
	for _, d := range dests {
		info := &rpc.DestinationInfo{
			Name: d.GetName(), Kind: d.GetKind(), Addr: d.GetAddr(), Connector: d.GetConnector(), Mesh: d.GetMesh(),
			Labels: d.GetLabels(), Database: d.GetDatabase(),
			CreatedIndex: d.GetCreated().GetIndex(), CreatedUnixNano: d.GetCreated().GetTimeUnixNano(),
		}
		if c := d.GetConnector(); c != "" {
			info.Status = connector[c]
			if info.Status == "" {
				info.Status = "revoked"
			}
		}
		resp.Destinations = append(resp.Destinations, info)
	}
	return resp, nil
}
