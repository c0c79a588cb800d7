package node

import (
	"reflect"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/internal/sshdtest"
	"github.com/hpt-dev/hpt/rpc"
)

// fakeSSHState is a fixed applied state for computeSSHAccess.
type fakeSSHState struct {
	index   uint64
	dests   []*fsm.Destination
	grants  []*fsm.Grant
	revoked []*fsm.Credential
}

func (f *fakeSSHState) AppliedIndex() uint64 { return f.index }
func (f *fakeSSHState) DestinationsOfConnector(target string) ([]*fsm.Destination, error) {
	var out []*fsm.Destination
	for _, d := range f.dests {
		if d.GetConnector() == target {
			out = append(out, d)
		}
	}
	return out, nil
}
func (f *fakeSSHState) Grants(string) ([]*fsm.Grant, error) { return f.grants, nil }
func (f *fakeSSHState) RevokedCredentials(dest string, now time.Time) ([]*fsm.Credential, error) {
	var out []*fsm.Credential
	for _, c := range f.revoked {
		if c.GetDestination() == dest && c.GetValidBeforeUnixNano() > now.UnixNano() {
			out = append(out, c)
		}
	}
	return out, nil
}

func testSigner(t *testing.T) ssh.Signer {
	s, _ := sshdtest.NewKey(t)
	return s
}

func TestComputeSSHAccess(t *testing.T) {
	cas := SSHCAs{User: testSigner(t), Host: testSigner(t)}
	hostKey := ssh.MarshalAuthorizedKey(testSigner(t).PublicKey())
	g := func(subject, priv, res string) *fsm.Grant {
		return &fsm.Grant{Subject: subject, Privilege: priv, Resource: res}
	}
	now := time.Unix(1_800_000_000, 0)
	later := now.Add(time.Hour).UnixNano()
	expiring := func(subject, priv, res string, exp int64) *fsm.Grant {
		return &fsm.Grant{Subject: subject, Privilege: priv, Resource: res, ExpiresUnixNano: exp}
	}
	st := &fakeSSHState{index: 42,
		dests: []*fsm.Destination{
			{Name: "web-1", Kind: "ssh", Addr: "10.0.0.5:22", Connector: "c1"},
			{Name: "web-2", Kind: "ssh", Addr: "web2.example:2222", Connector: "c1"},
			{Name: "db-1", Kind: "postgres", Addr: "10.0.0.6:5432", Connector: "c1"},
			{Name: "web-3", Kind: "ssh", Addr: "10.0.0.7:22", Connector: "c2"},
			{Name: "pg", Kind: "postgres", Addr: "10.0.0.8:5432", Connector: "c3"},
		},
		grants: []*fsm.Grant{
			g("user:alice", "login:deploy", "destinations/web-*"),
			g("user:bob", "login:deploy", "destinations/web-1"), // same principal again
			g("group:ops", "login-forward:admin", "destinations/*"),
			g("user:carol", "login:dba", "destinations/db-*"), // postgres destination: no principal
			g("user:dave", "db:app", "destinations/*"),        // not a login
			g("user:erin", "view", "*"),
			g("user:frank", "login:web3", "destinations/web-3"),                       // another connector's
			expiring("user:gina", "login:temp", "destinations/web-1", now.UnixNano()), // expired at now: no principal
			expiring("user:hal", "login:soon", "destinations/web-2", later),           // not yet expired
		},
	}
	st.revoked = []*fsm.Credential{
		{Id: "c_2", Subject: "user:bob", Destination: "web-2", Kind: "ssh", Serial: 9, ValidBeforeUnixNano: later},
		{Id: "c_1", Subject: "user:alice", Destination: "web-1", Kind: "ssh", Serial: 7, ValidBeforeUnixNano: later},
		{Id: "c_3", Subject: "user:alice", Destination: "web-3", Kind: "ssh", Serial: 8, ValidBeforeUnixNano: later},          // c2's
		{Id: "c_4", Subject: "user:alice", Destination: "web-1", Kind: "ssh", Serial: 5, ValidBeforeUnixNano: now.UnixNano()}, // expired
	}
	for _, tc := range []struct {
		name     string
		target   string
		hostKeys [][]byte
		want     map[string][]string // nil: no state at all
		hostCert []string            // its principals; nil: none
		serials  []uint64
		keyIDs   []string
	}{
		{name: "connector of two ssh destinations", target: "c1", hostKeys: [][]byte{hostKey},
			serials: []uint64{7, 9}, keyIDs: []string{"user:alice cred:c_1", "user:bob cred:c_2"},
			want:     map[string][]string{"deploy": {"deploy@web-1", "deploy@web-2"}, "admin": {"admin@web-1", "admin@web-2"}, "soon": {"soon@web-2"}},
			hostCert: []string{"10.0.0.5", "web-1", "web-2", "web2.example"}},
		{name: "no host keys yet", target: "c1",
			serials: []uint64{7, 9}, keyIDs: []string{"user:alice cred:c_1", "user:bob cred:c_2"},
			want: map[string][]string{"deploy": {"deploy@web-1", "deploy@web-2"}, "admin": {"admin@web-1", "admin@web-2"}, "soon": {"soon@web-2"}}},
		{name: "other connector", target: "c2", hostKeys: [][]byte{hostKey},
			serials: []uint64{8}, keyIDs: []string{"user:alice cred:c_3"},
			want:     map[string][]string{"admin": {"admin@web-3"}, "deploy": {"deploy@web-3"}, "web3": {"web3@web-3"}},
			hostCert: []string{"10.0.0.7", "web-3"}},
		{name: "connector of no ssh destination", target: "c3"},
		{name: "unknown target", target: "nobody"},
		{name: "reports host keys but manages nothing", target: "nobody", hostKeys: [][]byte{hostKey}, want: map[string][]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc, _, err := computeSSHAccess(st, tc.target, now, cas, tc.hostKeys, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if acc != nil {
					t.Fatalf("got %v, want no state", acc)
				}
				return
			}
			if acc.GetIndex() != 42 || string(acc.GetUserCaPublicKey()) != string(ssh.MarshalAuthorizedKey(cas.User.PublicKey())) {
				t.Errorf("index %d, user CA %q", acc.GetIndex(), acc.GetUserCaPublicKey())
			}
			got := map[string][]string{}
			for l, p := range acc.GetPrincipalsByLogin() {
				got[l] = p.GetPrincipals()
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("principals %v, want %v", got, tc.want)
			}
			if !reflect.DeepEqual(acc.GetRevokedSerials(), tc.serials) || !reflect.DeepEqual(acc.GetRevokedKeyIds(), tc.keyIDs) {
				t.Errorf("revoked serials %v, key ids %q; want %v, %q", acc.GetRevokedSerials(), acc.GetRevokedKeyIds(), tc.serials, tc.keyIDs)
			}
			if tc.hostCert == nil {
				if len(acc.GetHostCertificate()) != 0 {
					t.Errorf("host certificate %q, want none", acc.GetHostCertificate())
				}
				return
			}
			cert := parseCert(t, acc.GetHostCertificate())
			if cert.CertType != ssh.HostCert || !reflect.DeepEqual(cert.ValidPrincipals, tc.hostCert) ||
				string(cert.SignatureKey.Marshal()) != string(cas.Host.PublicKey().Marshal()) ||
				string(ssh.MarshalAuthorizedKey(cert.Key)) != string(hostKey) {
				t.Errorf("host certificate: type %d, principals %v, signed by %s", cert.CertType, cert.ValidPrincipals, ssh.FingerprintSHA256(cert.SignatureKey))
			}
			if time.Unix(int64(cert.ValidBefore), 0) != now.Add(hostCertLifetime) {
				t.Errorf("valid before %d", cert.ValidBefore)
			}
		})
	}
	if acc, _, err := computeSSHAccess(st, "c1", now, SSHCAs{}, [][]byte{hostKey}, nil); acc != nil || err != nil {
		t.Errorf("without CAs: %v, %v; want nothing", acc, err)
	}
}

func parseCert(t *testing.T, b []byte) *ssh.Certificate {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		t.Fatalf("%T is no certificate", pub)
	}
	return cert
}

// TestHostCertificateReusedUntilRenewal: the host certificate is signed
// once and sent again while two thirds of its life are left; then, or for
// another key or other principals, it is signed anew.
func TestHostCertificateReusedUntilRenewal(t *testing.T) {
	cas := SSHCAs{User: testSigner(t), Host: testSigner(t)}
	key1 := ssh.MarshalAuthorizedKey(testSigner(t).PublicKey())
	key2 := ssh.MarshalAuthorizedKey(testSigner(t).PublicKey())
	st := &fakeSSHState{index: 1, dests: []*fsm.Destination{{Name: "web-1", Kind: "ssh", Addr: "10.0.0.5:22", Connector: "c1"}}}
	now := time.Unix(1_800_000_000, 0)
	serial := func(acc *rpc.SSHAccess) uint64 { return parseCert(t, acc.GetHostCertificate()).Serial }
	acc, hc, err := computeSSHAccess(st, "c1", now, cas, [][]byte{key1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := serial(acc)
	acc, hc, _ = computeSSHAccess(st, "c1", now.Add(hostCertLifetime*2/3-time.Hour), cas, [][]byte{key1}, hc)
	if serial(acc) != first {
		t.Errorf("re-signed with more than a third of its life left")
	}
	acc, hc2, _ := computeSSHAccess(st, "c1", now.Add(hostCertLifetime*2/3+time.Hour), cas, [][]byte{key1}, hc)
	if serial(acc) == first {
		t.Errorf("not renewed with less than a third of its life left")
	}
	if !sameSSHAccess(acc, acc) || sameSSHAccess(acc, &rpc.SSHAccess{}) {
		t.Errorf("sameSSHAccess")
	}
	acc, _, _ = computeSSHAccess(st, "c1", now, cas, [][]byte{key2}, hc)
	if c := parseCert(t, acc.GetHostCertificate()); string(c.Key.Marshal()) == string(parseCert(t, hc.text).Key.Marshal()) {
		t.Errorf("another host key kept the old certificate")
	}
	st.dests = append(st.dests, &fsm.Destination{Name: "web-9", Kind: "ssh", Addr: "10.0.0.9:22", Connector: "c1"})
	acc, _, _ = computeSSHAccess(st, "c1", now, cas, [][]byte{key1}, hc2)
	if c := parseCert(t, acc.GetHostCertificate()); !reflect.DeepEqual(c.ValidPrincipals, []string{"10.0.0.5", "10.0.0.9", "web-1", "web-9"}) {
		t.Errorf("a new destination kept the old principals: %v", c.ValidPrincipals)
	}
}

func TestCheckHostKeys(t *testing.T) {
	good := ssh.MarshalAuthorizedKey(testSigner(t).PublicKey())
	if _, err := checkHostKeys(&rpc.HostKeys{PublicKeys: [][]byte{good, []byte("garbage")}}); err == nil {
		t.Error("garbage host key accepted")
	}
	many := make([][]byte, maxHostKeys+1)
	for i := range many {
		many[i] = good
	}
	if _, err := checkHostKeys(&rpc.HostKeys{PublicKeys: many}); err == nil {
		t.Error("too many host keys accepted")
	}
	if k, err := checkHostKeys(&rpc.HostKeys{PublicKeys: [][]byte{good}}); err != nil || len(k) != 1 {
		t.Errorf("good key: %v %v", k, err)
	}
}

// FuzzCheckHostKeys: a connector's host key report (bytes from the agent)
// never panics, and what it accepts parses as public keys.
func FuzzCheckHostKeys(f *testing.F) {
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl host"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := checkHostKeys(&rpc.HostKeys{PublicKeys: [][]byte{b, b}})
		if err != nil {
			return
		}
		for _, k := range keys {
			if _, _, _, _, err := ssh.ParseAuthorizedKey(k); err != nil {
				t.Fatalf("accepted %q: %v", k, err)
			}
		}
	})
}
