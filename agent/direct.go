package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/agent/provision"
	"github.com/hpt-dev/hpt/provconfig"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/pinned"
)

// directServer serves rpc.Agent on the agent's own port. The TLS handshake
// has already proven the caller holds a trusted key.
type directServer struct {
	rpc.UnimplementedAgentServer
	a *Agent
}

func (s *directServer) Provision(req *rpc.ProvisionRequest, stream grpc.ServerStreamingServer[rpc.ProvisionEvent]) error {
	peer := pinned.PeerKeyFromContext(stream.Context())
	if peer == nil {
		return status.Error(codes.PermissionDenied, "no client key")
	}
	s.a.log.Info("provisioning", "config", req.GetName(), "client", pinned.Fingerprint(peer), "dry_run", req.GetDryRun())
	b := &provision.Bundle{Name: req.GetName(), Config: req.GetConfig(), Files: req.GetFiles()}
	var sendErr error
	rep, err := s.a.run(stream.Context(), b, req.GetDryRun(), req.GetVars(), func(r provision.BlockResult) {
		if sendErr == nil {
			sendErr = stream.Send(&rpc.ProvisionEvent{Event: &rpc.ProvisionEvent_Block{Block: BlockToEvent(r)}})
		}
	})
	if err != nil {
		var ce provconfig.ConfigErrors
		if errors.As(err, &ce) {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		return status.Error(codes.Aborted, err.Error())
	}
	if sendErr != nil {
		return sendErr
	}
	t := rep.Totals
	return stream.Send(&rpc.ProvisionEvent{Event: &rpc.ProvisionEvent_Done{Done: &rpc.ProvisionDone{
		Target: s.a.name, DryRun: rep.DryRun,
		Totals: &rpc.Totals{Ok: uint32(t.OK), Changed: uint32(t.Changed), Failed: uint32(t.Failed), Skipped: uint32(t.Skipped)},
	}}})
}

// DirectRequest is one direct provisioning call (`hpt --target --ip`).
type DirectRequest struct {
	// Addr of the target's `hpt serve`.
	Addr string
	// Target names the target, for messages.
	Target string
	// TargetKey is the key the client's keystore holds for Target.
	TargetKey ed25519.PublicKey
	// ClientKey is the client's own keypair.
	ClientKey ed25519.PrivateKey
	Bundle    *provision.Bundle
	DryRun    bool
	Vars      map[string]string
	// OnBlock is called as each block result arrives.
	OnBlock func(provision.BlockResult)
}

// ErrRefused is wrapped when the target refused the client's key.
var ErrRefused = errors.New("refused by target")

// ProvisionDirect sends a bundle to a target and streams back its results.
// A target key that differs from req.TargetKey, or a target that does not
// trust the client's key, fails the handshake before anything is sent.
func ProvisionDirect(ctx context.Context, req DirectRequest) (*rpc.ProvisionDone, error) {
	cert, err := pinned.Certificate(req.ClientKey)
	if err != nil {
		return nil, err
	}
	clientFP := pinned.Fingerprint(req.ClientKey.Public().(ed25519.PublicKey))
	tlsCfg := pinned.ClientConfig(&cert, pinned.Pin("target "+req.Target, pinned.Fingerprint(req.TargetKey)), pinned.ProtoGRPC)
	// Dial ourselves so that the handshake's own error (which key was
	// refused) reaches the user instead of gRPC's generic retry message.
	conn, err := grpc.NewClient("passthrough:///"+req.Addr,
		grpc.WithTransportCredentials(pinned.ClientCredentials(tlsCfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(provision.MaxBundleSize+1<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", req.Addr, err)
	}
	defer conn.Close()
	if err := handshake(ctx, req.Addr, tlsCfg); err != nil {
		var ke *pinned.KeyError
		switch {
		case errors.As(err, &ke):
			return nil, fmt.Errorf("%s at %s: %w; nothing was applied", req.Target, req.Addr, ke)
		case pinned.IsRefusedByPeer(err):
			return nil, fmt.Errorf("%w: %s at %s does not trust this client's key %s (its keystore lacks it); nothing was applied", ErrRefused, req.Target, req.Addr, clientFP)
		}
		return nil, fmt.Errorf("connect to %s at %s: %w", req.Target, req.Addr, err)
	}
	stream, err := rpc.NewAgentClient(conn).Provision(ctx, &rpc.ProvisionRequest{
		Name: req.Bundle.Name, Config: req.Bundle.Config, Files: req.Bundle.Files, DryRun: req.DryRun, Vars: req.Vars,
	}, grpc.WaitForReady(false))
	if err != nil {
		return nil, err
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("%s ended the stream without a result", req.Target)
		}
		if err != nil {
			if pinned.IsRefusedByPeer(err) {
				return nil, fmt.Errorf("%w: %s does not trust this client's key %s; nothing was applied", ErrRefused, req.Target, clientFP)
			}
			return nil, err
		}
		switch e := ev.GetEvent().(type) {
		case *rpc.ProvisionEvent_Block:
			if req.OnBlock != nil {
				req.OnBlock(BlockFromEvent(e.Block))
			}
		case *rpc.ProvisionEvent_Done:
			return e.Done, nil
		}
	}
}

// handshake performs one TLS handshake and a first read, which is where a
// TLS 1.3 client learns that the server refused its certificate.
func handshake(ctx context.Context, addr string, cfg *tls.Config) error {
	d := &tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// The server speaks first in HTTP/2 (its SETTINGS frame); a refusal
	// arrives as an alert instead.
	buf := make([]byte, 1)
	_, err = c.Read(buf)
	return err
}
