package node

import (
	"context"
	"crypto/ed25519"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

func (a *keysAPI) Register(ctx context.Context, req *rpc.RegisterKeyRequest) (*rpc.WriteResponse, error) {
	if len(req.GetPublicKey()) != ed25519.PublicKeySize {
		return nil, status.Errorf(codes.InvalidArgument, "public_key: %d bytes, want %d", len(req.GetPublicKey()), ed25519.PublicKeySize)
	}
	if a.n.clusterPub.Equal(ed25519.PublicKey(req.GetPublicKey())) {
		// Every node presents the cluster key; as a target's key, its
		// revocation would cut the cluster's own connections.
		return nil, status.Error(codes.InvalidArgument, "public_key: that is the cluster's key, which nodes present; a target needs a key of its own (hpt gen-target-keys makes one)")
	}
	return a.n.propose(ctx, &events.TargetKeyRegistered{Target: req.GetTarget(), PublicKey: req.GetPublicKey(), Labels: req.GetLabels()})
}

func (a *keysAPI) List(context.Context, *rpc.ListKeysRequest) (*rpc.ListKeysResponse, error) {
	keys, err := a.n.fsm.TargetKeys()
	if err != nil {
		return nil, stateErr(err)
	}
	resp := &rpc.ListKeysResponse{}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, &rpc.KeyInfo{
			Target: k.GetTarget(), PublicKey: k.GetPublicKey(), Fingerprint: pinned.Fingerprint(k.GetPublicKey()),
			Labels: k.GetLabels(), Revoked: k.GetRevoked(), CreatedUnixNano: k.GetCreated().GetTimeUnixNano(),
			Connected: k.GetConnected(), Node: k.GetNode(), LastTransitionUnixNano: k.GetLastTransitionUnixNano(),
			ClaimedLabels: k.GetClaimedLabels(),
		})
	}
	return resp, nil
}

func (a *keysAPI) Revoke(ctx context.Context, req *rpc.RevokeKeyRequest) (*rpc.WriteResponse, error) {
	return a.n.propose(ctx, &events.TargetKeyRevoked{Target: req.GetTarget()})
}

// Enrollment tells a new target keystore how to reach and trust the
// cluster: the cluster key, the gossip key and the servers' gossip addresses.
func (a *keysAPI) Enrollment(context.Context, *rpc.EnrollmentRequest) (*rpc.EnrollmentResponse, error) {
	resp := &rpc.EnrollmentResponse{ClusterPublicKey: a.n.clusterPub, GossipKey: a.n.cfg.GossipKey}
	resp.Seeds = a.n.gossipSeeds()
	return resp, nil
}
