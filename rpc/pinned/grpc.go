package pinned

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthInfo is the gRPC auth information of a pinned TLS connection.
type AuthInfo struct {
	credentials.CommonAuthInfo
	// PeerKey is the peer's verified Ed25519 key, nil if it presented none.
	PeerKey ed25519.PublicKey
	State   tls.ConnectionState
}

// AuthType implements credentials.AuthInfo.
func (AuthInfo) AuthType() string { return "hpt-pinned-tls" }

// PeerKeyFromContext returns the verified key of the peer of an incoming or
// outgoing gRPC call, or nil.
func PeerKeyFromContext(ctx context.Context) ed25519.PublicKey {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return nil
	}
	return info.PeerKey
}

type creds struct {
	cfg    *tls.Config
	server bool
}

// ServerCredentials returns gRPC transport credentials for a server using
// cfg (from ServerConfig). Connections that arrive already handshaken (a
// HandshakenConn from a protocol multiplexer) are passed through.
func ServerCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return &creds{cfg: cfg, server: true}
}

// ClientCredentials returns gRPC transport credentials for a client using
// cfg (from ClientConfig).
func ClientCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return &creds{cfg: cfg}
}

// HandshakenConn is a connection whose TLS handshake is complete, such as
// a *tls.Conn accepted by a multiplexer, or a wrapper around one.
type HandshakenConn interface {
	net.Conn
	ConnectionState() tls.ConnectionState
}

func authInfo(conn HandshakenConn) AuthInfo {
	cs := conn.ConnectionState()
	return AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		PeerKey:        PeerKey(cs),
		State:          cs,
	}
}

func (c *creds) ClientHandshake(ctx context.Context, _ string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn := tls.Client(raw, c.cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("tls handshake with %s: %w", raw.RemoteAddr(), err)
	}
	return conn, authInfo(conn), nil
}

func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if conn, ok := raw.(HandshakenConn); ok && conn.ConnectionState().HandshakeComplete {
		return conn, authInfo(conn), nil
	}
	conn := tls.Server(raw, c.cfg)
	if err := conn.Handshake(); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("tls handshake with %s: %w", raw.RemoteAddr(), err)
	}
	return conn, authInfo(conn), nil
}

func (c *creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3", ServerName: "hpt"}
}

func (c *creds) Clone() credentials.TransportCredentials {
	return &creds{cfg: c.cfg.Clone(), server: c.server}
}

func (c *creds) OverrideServerName(string) error { return nil }
