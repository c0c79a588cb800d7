package pinned

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func newKey(t *testing.T) (ed25519.PublicKey, tls.Certificate) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := Certificate(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pub, cert
}

// serve accepts one connection with cfg, completes the handshake, echoes
// one byte, and reports the handshake error.
func serve(t *testing.T, cfg *tls.Config) (addr string, result <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		conn := tls.Server(raw, cfg)
		if err := conn.Handshake(); err != nil {
			ch <- err
			return
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(conn, b); err == nil {
			conn.Write(b)
		}
		ch <- nil
	}()
	return ln.Addr().String(), ch
}

// roundTrip dials, sends a byte and reads it back: with TLS 1.3 a client
// learns that the server refused its certificate only on its first read.
func roundTrip(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{1}); err != nil {
		return err
	}
	_, err = io.ReadFull(conn, make([]byte, 1))
	return err
}

func TestPinnedHandshakes(t *testing.T) {
	serverPub, serverCert := newKey(t)
	clientPub, clientCert := newKey(t)
	_, strangerCert := newKey(t)
	otherPub, _ := newKey(t)

	// The server trusts exactly clientPub for raft and accepts key-less
	// clients for gRPC, like a node does.
	verifyClient := func(pub ed25519.PublicKey, proto string) error {
		if pub == nil && proto == ProtoGRPC {
			return nil
		}
		if pub != nil && pub.Equal(clientPub) {
			return nil
		}
		return &KeyError{Peer: "client", Fingerprint: fingerprintOf(pub)}
	}
	serverCfg := ServerConfig(serverCert, verifyClient, ProtoGRPC, ProtoRaft)
	pinServer := Pin("server", Fingerprint(serverPub))

	// serverErr is what the server's side of the handshake must end with:
	// "" for success, "refused" for its own key check refusing the client
	// (a *KeyError naming the key presented), or a substring of the error
	// for handshakes the client broke off.
	tests := []struct {
		name       string
		client     *tls.Config
		clientErr  string // substring of the client's error, "" for success
		serverErr  string
		wantPeerFP string // fingerprint the server should name in its refusal
	}{
		{name: "trusted key, raft", client: ClientConfig(&clientCert, pinServer, ProtoRaft)},
		{name: "no key, grpc", client: ClientConfig(nil, pinServer, ProtoGRPC)},
		{name: "no key, raft", client: ClientConfig(nil, pinServer, ProtoRaft), clientErr: "certificate", serverErr: "refused"},
		{name: "stranger key", client: ClientConfig(&strangerCert, pinServer, ProtoGRPC), clientErr: "certificate", serverErr: "refused",
			wantPeerFP: Fingerprint(strangerCert.Leaf.PublicKey.(ed25519.PublicKey))},
		{name: "stranger key, raft", client: ClientConfig(&strangerCert, pinServer, ProtoRaft), clientErr: "certificate", serverErr: "refused",
			wantPeerFP: Fingerprint(strangerCert.Leaf.PublicKey.(ed25519.PublicKey))},
		{name: "client pins another server key", client: ClientConfig(&clientCert, Pin("server", Fingerprint(otherPub)), ProtoGRPC),
			clientErr: "server key " + Fingerprint(serverPub) + " refused: expected " + Fingerprint(otherPub), serverErr: "bad certificate"},
		{name: "unknown protocol", client: ClientConfig(&clientCert, pinServer, "hpt-unknown"), clientErr: "no application protocol",
			serverErr: "unsupported application protocols"},
		// crypto/tls lets a client offering only http/1.1 through without
		// ALPN; the client's own check then breaks off.
		{name: "http/1.1", client: ClientConfig(&clientCert, pinServer, "http/1.1"), clientErr: "server does not speak http/1.1",
			serverErr: "bad certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, result := serve(t, serverCfg)
			err := roundTrip(addr, tc.client)
			switch {
			case tc.clientErr == "" && err != nil:
				t.Fatalf("client: %v", err)
			case tc.clientErr != "" && (err == nil || !strings.Contains(err.Error(), tc.clientErr)):
				t.Fatalf("client error = %v, want it to contain %q", err, tc.clientErr)
			}
			var serr error
			select {
			case serr = <-result:
			case <-time.After(30 * time.Second):
				t.Fatal("server handshake never ended")
			}
			var ke *KeyError
			switch {
			case tc.serverErr == "" && serr != nil:
				t.Fatalf("server: %v", serr)
			case tc.serverErr == "refused":
				if !errors.As(serr, &ke) || !errors.Is(serr, ErrUnknownKey) || ke.Fingerprint != tc.wantPeerFP {
					t.Fatalf("server error = %v, want its key check to refuse key %q", serr, tc.wantPeerFP)
				}
			case tc.serverErr != "" && (serr == nil || !strings.Contains(serr.Error(), tc.serverErr)):
				t.Fatalf("server error = %v, want it to contain %q", serr, tc.serverErr)
			}
			if tc.serverErr == "refused" && !IsRefusedByPeer(err) {
				t.Fatalf("client cannot tell it was refused: %v", err)
			}
		})
	}
}

func fingerprintOf(pub ed25519.PublicKey) string {
	if pub == nil {
		return ""
	}
	return Fingerprint(pub)
}

func TestCertificateMustBeSignedByItsKey(t *testing.T) {
	_, a := newKey(t)
	_, b := newKey(t)
	// Graft b's signature onto a's certificate: the key inside no longer
	// made the signature.
	forged := *a.Leaf
	forged.Signature = b.Leaf.Signature
	if _, err := peerKey([]*x509.Certificate{&forged}); err == nil {
		t.Fatal("certificate with a foreign signature accepted")
	}
	if _, err := peerKey([]*x509.Certificate{a.Leaf}); err != nil {
		t.Fatalf("genuine certificate refused: %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	pub, _ := newKey(t)
	fp := Fingerprint(pub)
	if !strings.HasPrefix(fp, "SHA256:") || len(fp) != len("SHA256:")+43 {
		t.Fatalf("fingerprint %q", fp)
	}
	for _, in := range []string{fp, " " + fp + " ", fp + "="} {
		got, err := ParseFingerprint(in)
		if err != nil || got != fp {
			t.Errorf("ParseFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "MD5:abc", "SHA256:short", strings.TrimPrefix(fp, "SHA256:")} {
		if _, err := ParseFingerprint(in); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", in)
		}
	}
	var ke *KeyError
	err := Pin("cluster", fp)(nil, ProtoGRPC)
	if !errors.As(err, &ke) || !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Pin with no key: %v", err)
	}
}
