// Package pinned is hpt's transport security: TLS 1.3 between peers that
// know each other by Ed25519 public key alone. There is no certificate
// authority and no host name: each side presents a self-signed certificate
// made from its keystore key, and a peer is accepted only if a VerifyFunc
// supplied by the caller accepts its public key. This is the curvetls model of
// the original hpt on standard crypto.
//
// Node, agent and CLI all use this one implementation; the application
// protocol is chosen by ALPN (ProtoGRPC, ProtoRaft) so that a node can serve
// everything on one TCP port.
package pinned

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// ALPN protocol names carried on the shared port.
const (
	ProtoGRPC = "h2"
	ProtoRaft = "hpt-raft"
)

// ErrUnknownKey is wrapped by every refusal of a peer's key.
var ErrUnknownKey = errors.New("unknown key")

// KeyError reports a refused peer key by fingerprint (never the key material
// of our side).
type KeyError struct {
	// Peer is what was refused ("server", "client", "target foo", ...).
	Peer string
	// Fingerprint of the key the peer presented; empty if it presented none.
	Fingerprint string
	// Want, if set, is the fingerprint that was expected.
	Want string
}

func (e *KeyError) Error() string {
	switch {
	case e.Fingerprint == "":
		return fmt.Sprintf("%s presented no key", e.Peer)
	case e.Want != "":
		return fmt.Sprintf("%s key %s refused: expected %s", e.Peer, e.Fingerprint, e.Want)
	default:
		return fmt.Sprintf("%s key %s refused: not trusted", e.Peer, e.Fingerprint)
	}
}

func (e *KeyError) Unwrap() error { return ErrUnknownKey }

// VerifyFunc decides whether a peer may proceed. pub is nil when the peer
// presented no certificate; proto is the negotiated ALPN protocol. Return nil
// to accept; the error is sent nowhere but the local log and the local caller.
type VerifyFunc func(pub ed25519.PublicKey, proto string) error

// Fingerprint returns the key's SHA-256 fingerprint in the form ssh prints:
// "SHA256:" followed by unpadded standard base64.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// ParseFingerprint checks that s is a fingerprint as Fingerprint prints it
// and returns it in canonical form.
func ParseFingerprint(s string) (string, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "SHA256:")
	if !ok {
		return "", fmt.Errorf("cluster key fingerprint %q: must start with SHA256:", s)
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(rest, "="))
	if err != nil || len(raw) != sha256.Size {
		return "", fmt.Errorf("cluster key fingerprint %q: want SHA256: and 43 base64 characters", s)
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(raw), nil
}

// Pin returns a VerifyFunc that accepts exactly the key with fingerprint fp.
// peer names the other side in refusals.
func Pin(peer, fp string) VerifyFunc {
	return func(pub ed25519.PublicKey, _ string) error {
		if pub == nil {
			return &KeyError{Peer: peer, Want: fp}
		}
		if got := Fingerprint(pub); got != fp {
			return &KeyError{Peer: peer, Fingerprint: got, Want: fp}
		}
		return nil
	}
}

// Certificate makes the self-signed certificate a peer presents for priv. It
// carries no names: the public key is the identity.
func Certificate(priv ed25519.PrivateKey) (tls.Certificate, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return tls.Certificate{}, fmt.Errorf("make certificate: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make certificate: serial: %w", err)
	}
	// The validity window is wide on purpose: keys are pinned, so expiry would
	// only add an outage, and clocks on fresh hosts are often wrong.
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "hpt"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	pub := priv.Public().(ed25519.PublicKey)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("make certificate: parse: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// peerKey extracts the Ed25519 key of the peer's leaf certificate and checks
// that the certificate is signed by that same key, so a peer cannot present
// someone else's public key without holding its private key. TLS itself
// proves possession of the private key in CertificateVerify.
func peerKey(certs []*x509.Certificate) (ed25519.PublicKey, error) {
	if len(certs) == 0 {
		return nil, nil
	}
	leaf := certs[0]
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("peer certificate: key is %T, want Ed25519", leaf.PublicKey)
	}
	// CheckSignatureFrom would demand a CA certificate; the key pins trust,
	// the signature only proves the certificate was made with it.
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		return nil, fmt.Errorf("peer certificate: not self-signed by its key: %w", err)
	}
	return pub, nil
}

// PeerKey returns the verified Ed25519 key of a finished handshake's peer, or
// nil if the peer presented none.
func PeerKey(cs tls.ConnectionState) ed25519.PublicKey {
	pub, err := peerKey(cs.PeerCertificates)
	if err != nil {
		return nil
	}
	return pub
}

func verifyConnection(verify VerifyFunc) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		pub, err := peerKey(cs.PeerCertificates)
		if err != nil {
			return err
		}
		return verify(pub, cs.NegotiatedProtocol)
	}
}

// ServerConfig returns the TLS configuration of a listening side. Clients may
// or may not present a certificate; verify decides, per ALPN protocol, which
// keys (or no key) are acceptable. protos lists the ALPN protocols offered;
// a client that asks for none of them is refused.
func ServerConfig(cert tls.Certificate, verify VerifyFunc, protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequestClientCert,
		NextProtos:       protos,
		VerifyConnection: verifyConnection(verify),
		// Session resumption would skip client certificate verification
		// against the current trust set (a revoked key could resume).
		SessionTicketsDisabled: true,
	}
}

// ClientConfig returns the TLS configuration of a dialling side. cert may be
// nil for clients without a key (CLI users authenticate with tokens). The
// server is accepted only if verifyServer accepts its key.
func ClientConfig(cert *tls.Certificate, verifyServer VerifyFunc, proto string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{proto},
		// Chain and name verification are replaced by key pinning in
		// VerifyConnection, which runs on every handshake.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != proto {
				return fmt.Errorf("server does not speak %s", proto)
			}
			return verifyConnection(verifyServer)(cs)
		},
		ServerName: "hpt",
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// IsRefusedByPeer reports whether err looks like the other side rejecting our
// certificate during or right after the handshake (TLS 1.3 clients learn of
// it only on the first read).
func IsRefusedByPeer(err error) bool {
	if err == nil {
		return false
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "bad certificate") || strings.Contains(s, "certificate required") ||
		strings.Contains(s, "unknown certificate")
}
