package pinned

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// FuzzPeerKey runs the peer-key extraction on arbitrary certificate bytes,
// as a TLS peer (anyone who can reach a port) presents them. A key is
// returned only for an Ed25519 certificate whose signature that same key
// made over the certificate's body; anything else is refused with an error,
// never a nil key passed off as "no certificate".
func FuzzPeerKey(f *testing.F) {
	_, a := newKeyTB(f)
	_, b := newKeyTB(f)
	f.Add(a.Leaf.Raw)
	forged := append([]byte(nil), a.Leaf.Raw...)
	copy(forged[len(forged)-len(b.Leaf.Signature):], b.Leaf.Signature)
	f.Add(forged)
	f.Add(ecdsaCert(f))
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return // crypto/tls refuses it before peerKey runs
		}
		pub, err := peerKey([]*x509.Certificate{cert})
		if err != nil {
			if pub != nil {
				t.Fatal("peerKey returned a key with its error")
			}
			return
		}
		want, ok := cert.PublicKey.(ed25519.PublicKey)
		if !ok || pub == nil || !pub.Equal(want) {
			t.Fatalf("peerKey accepted a %T certificate, returned %x", cert.PublicKey, pub)
		}
		if !ed25519.Verify(pub, cert.RawTBSCertificate, cert.Signature) {
			t.Fatal("peerKey accepted a certificate its key did not sign")
		}
	})
}

func newKeyTB(tb testing.TB) (ed25519.PublicKey, tls.Certificate) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := Certificate(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return pub, cert
}

// ecdsaCert is a well-formed self-signed certificate with a key of the
// wrong kind.
func ecdsaCert(tb testing.TB) []byte {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hpt"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}
