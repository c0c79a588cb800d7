package node

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/rpc"
)

// UpgradeCACommand is what adds the SSH CAs to a cluster keystore made
// before hpt had them; messages about missing CAs name it.
const UpgradeCACommand = "hpt init --add-cas KEYSTORE"

// SSHCAs are the cluster's SSH certificate authorities (its keys of
// authority for SSH, SPEC section 11) as signers for node code: the user
// CA signs user certificates, the host CA host certificates. Both are nil
// on a node whose cluster keystore predates them; its SSH access features
// are then off (see UpgradeCACommand).
//
// Formatting SSHCAs with fmt or slog prints the public fingerprints only.
type SSHCAs struct {
	User ssh.Signer
	Host ssh.Signer
}

// SSHCAsFromKeys makes signers of the keystore's CAs; missing ones stay nil.
func SSHCAsFromKeys(k keystore.SSHCAs) (SSHCAs, error) {
	var cas SSHCAs
	if k.User != nil {
		s, err := ssh.NewSignerFromKey(k.User)
		if err != nil {
			return SSHCAs{}, fmt.Errorf("SSH user CA: %w", err)
		}
		cas.User = s
	}
	if k.Host != nil {
		s, err := ssh.NewSignerFromKey(k.Host)
		if err != nil {
			return SSHCAs{}, fmt.Errorf("SSH host CA: %w", err)
		}
		cas.Host = s
	}
	return cas, nil
}

// Present reports whether the node has both CAs.
func (c SSHCAs) Present() bool { return c.User != nil && c.Host != nil }

func caFingerprint(s ssh.Signer) string {
	if s == nil {
		return "none"
	}
	return ssh.FingerprintSHA256(s.PublicKey())
}

// String prints the fingerprints, never a private key.
func (c SSHCAs) String() string {
	return fmt.Sprintf("SSHCAs{user: %s, host: %s}", caFingerprint(c.User), caFingerprint(c.Host))
}

// Format keeps the signers' private keys out of every fmt verb.
func (c SSHCAs) Format(f fmt.State, _ rune) { fmt.Fprint(f, c.String()) }

// LogValue logs the fingerprints.
func (c SSHCAs) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", caFingerprint(c.User)), slog.String("host", caFingerprint(c.Host)))
}

func (c SSHCAs) validate() error {
	if (c.User == nil) != (c.Host == nil) {
		return fmt.Errorf("ssh CAs: %s: want both the user and the host CA, or neither", c)
	}
	return nil
}

// errNoCAs is the answer of every SSH access feature on a node without CAs.
func errNoCAs() error {
	return status.Errorf(codes.FailedPrecondition,
		"this node's cluster keystore holds no SSH CAs (it predates them): run `%s` on one copy of the keystore, copy that same file to every node and restart them",
		UpgradeCACommand)
}

// warnNoCAs logs, once at start, that SSH access is off on this node.
func (n *Node) warnNoCAs() {
	if n.cfg.SSHCAs.Present() {
		n.log.Info("SSH CAs loaded", "ssh_ca", n.cfg.SSHCAs)
		return
	}
	n.log.Warn("the cluster keystore holds no SSH CAs: SSH access (hpt ca show, SSH credentials) is off on this node",
		"fix", "run `"+UpgradeCACommand+"` on one copy of the keystore, copy that same file to every node, and restart each")
}

type caAPI struct {
	rpc.UnimplementedCAServer
	n *Node
}

func caPublicKey(s ssh.Signer) *rpc.CAPublicKey {
	return &rpc.CAPublicKey{
		PublicKey:   strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(s.PublicKey())), "\n"),
		Fingerprint: ssh.FingerprintSHA256(s.PublicKey()),
	}
}

func (a *caAPI) Show(context.Context, *rpc.ShowCARequest) (*rpc.ShowCAResponse, error) {
	cas := a.n.cfg.SSHCAs
	if !cas.Present() {
		return nil, errNoCAs()
	}
	user, host := caPublicKey(cas.User), caPublicKey(cas.Host)
	return &rpc.ShowCAResponse{UserCa: user, HostCa: host, KnownHosts: "@cert-authority * " + host.GetPublicKey()}, nil
}
