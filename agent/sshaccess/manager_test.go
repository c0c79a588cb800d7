package sshaccess

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/sshca"
	"github.com/hpt-dev/hpt/internal/sshdtest"
	"github.com/hpt-dev/hpt/rpc"
)

func newSigner(t testing.TB) ssh.Signer {
	s, _ := sshdtest.NewKey(t)
	return s
}

// fixture is a Manager over a temporary drop-in directory whose reload
// command appends a line to a file, so reloads can be counted.
type fixture struct {
	m               *Manager
	dir, reloadLog  string
	hostKey, hostCA ssh.Signer
	userCA          ssh.Signer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), hostKey: newSigner(t), hostCA: newSigner(t), userCA: newSigner(t)}
	keys := t.TempDir()
	hostPub := filepath.Join(keys, "ssh_host_ed25519_key.pub")
	if err := os.WriteFile(hostPub, ssh.MarshalAuthorizedKey(f.hostKey.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	f.reloadLog = filepath.Join(keys, "reloads")
	m, err := New(Config{Dir: f.dir, HostKeyPath: hostPub, Reload: []string{"sh", "-c", "echo reload >> " + f.reloadLog}})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

func (f *fixture) reloads(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(f.reloadLog)
	if errors.Is(err, fs.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "reload\n")
}

func hostCert(t testing.TB, ca ssh.Signer, key ssh.PublicKey) []byte {
	t.Helper()
	now := time.Now()
	c, err := sshca.IssueHost(nil, ca, sshca.HostCert{PublicKey: key, Destination: "web-1", Principals: []string{"127.0.0.1", "web-1"},
		ValidAfter: now.Add(-time.Minute), ValidBefore: now.Add(time.Hour), Serial: 7})
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(c)
}

func (f *fixture) access(t testing.TB) *rpc.SSHAccess {
	return &rpc.SSHAccess{
		Index:             5,
		UserCaPublicKey:   ssh.MarshalAuthorizedKey(f.userCA.PublicKey()),
		PrincipalsByLogin: map[string]*rpc.Principals{"deploy": {Principals: []string{"deploy@web-1"}}, "app": {Principals: []string{"app@web-1", "app@web-2"}}},
		RevokedSerials:    []uint64{3, 9},
		RevokedKeyIds:     []string{"user:bob cred:c_1"},
		HostCertificate:   hostCert(t, f.hostCA, f.hostKey.PublicKey()),
	}
}

// snapshot is every file under dir with its mode and contents.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		v := info.Mode().String()
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func read(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestApplyWritesTheDropInAndItsFiles: the layout and contents of what
// Apply writes, the reload only when sshd needs one, and nothing written
// when nothing changed.
func TestApplyWritesTheDropInAndItsFiles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	acc := f.access(t)
	changed, err := f.m.Apply(ctx, acc)
	if err != nil || !changed {
		t.Fatalf("Apply: changed %v, %v", changed, err)
	}
	files := filepath.Join(f.dir, "hpt")
	wantDropIn := sshca.DropInHeader +
		"TrustedUserCAKeys " + files + "/user_ca.pub\n" +
		"AuthorizedPrincipalsFile " + files + "/principals/%u\n" +
		"RevokedKeys " + files + "/revoked.krl\n" +
		"HostCertificate " + files + "/ssh_host_ed25519_key-cert.pub\n"
	if got := read(t, filepath.Join(f.dir, "hpt.conf")); got != wantDropIn {
		t.Errorf("drop-in:\n%s\nwant:\n%s", got, wantDropIn)
	}
	if got := read(t, filepath.Join(files, "user_ca.pub")); got != string(ssh.MarshalAuthorizedKey(f.userCA.PublicKey())) {
		t.Errorf("user CA file: %q", got)
	}
	if got := read(t, filepath.Join(files, "principals", "app")); got != sshca.DropInHeader+"app@web-1\napp@web-2\n" {
		t.Errorf("principals of app: %q", got)
	}
	if got := read(t, filepath.Join(files, "ssh_host_ed25519_key-cert.pub")); got != string(acc.HostCertificate) {
		t.Errorf("host certificate: %q", got)
	}
	krl, _ := sshca.KRL{Comment: "hpt", Certs: []sshca.RevokedCerts{{CA: f.userCA.PublicKey(), Serials: []uint64{9, 3}}, {KeyIDs: []string{"user:bob cred:c_1"}}}}.Marshal()
	if got := read(t, filepath.Join(files, "revoked.krl")); got != string(krl) {
		t.Errorf("KRL differs from sshca's for the same revocations")
	}
	if n := f.reloads(t); n != 1 {
		t.Fatalf("%d reloads after the first Apply, want 1", n)
	}

	// The same state again, under a later index: nothing written, no reload.
	before := snapshot(t, f.dir)
	acc.Index = 6
	if changed, err := f.m.Apply(ctx, acc); err != nil || changed {
		t.Fatalf("identical Apply: changed %v, %v", changed, err)
	}
	if !reflect.DeepEqual(snapshot(t, f.dir), before) || f.reloads(t) != 1 || f.m.Reloads() != 1 {
		t.Fatalf("identical Apply changed files or reloaded (%d reloads)", f.reloads(t))
	}

	// Revocations and principals are read by sshd at every login: written,
	// no reload. A login no longer present loses its file.
	acc.Index, acc.RevokedSerials = 7, []uint64{3, 9, 11}
	delete(acc.PrincipalsByLogin, "app")
	if changed, err := f.m.Apply(ctx, acc); err != nil || !changed {
		t.Fatalf("revoking Apply: changed %v, %v", changed, err)
	}
	if _, err := os.Stat(filepath.Join(files, "principals", "app")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("principals file of a removed login: %v", err)
	}
	if n := f.reloads(t); n != 1 {
		t.Errorf("a KRL and principals change reloaded sshd (%d reloads)", n)
	}

	// Without a host certificate the drop-in stops naming it, the file goes,
	// and sshd is reloaded (it reads HostCertificate only at reload).
	acc.Index, acc.HostCertificate = 8, nil
	if changed, err := f.m.Apply(ctx, acc); err != nil || !changed {
		t.Fatalf("Apply without host certificate: changed %v, %v", changed, err)
	}
	if got := read(t, filepath.Join(f.dir, "hpt.conf")); strings.Contains(got, "HostCertificate") {
		t.Errorf("drop-in still names the host certificate:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(files, "ssh_host_ed25519_key-cert.pub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("host certificate file left: %v", err)
	}
	if n := f.reloads(t); n != 2 {
		t.Errorf("%d reloads, want 2", n)
	}

	// An older state (a lagging node) is refused and changes nothing.
	before = snapshot(t, f.dir)
	old := f.access(t)
	old.Index = 4
	if _, err := f.m.Apply(ctx, old); !errors.Is(err, ErrStale) {
		t.Fatalf("stale Apply: %v, want ErrStale", err)
	}
	if !reflect.DeepEqual(snapshot(t, f.dir), before) {
		t.Fatal("stale Apply changed files")
	}
}

// TestApplyBadInputChangesNothing: each bad field is named, no file
// changes and sshd is not reloaded.
func TestApplyBadInputChangesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.m.Apply(ctx, f.access(t)); err != nil {
		t.Fatal(err)
	}
	other := newSigner(t)
	for _, tc := range []struct {
		name, field string
		mod         func(*rpc.SSHAccess)
	}{
		{"garbage CA key", "user_ca_public_key", func(a *rpc.SSHAccess) { a.UserCaPublicKey = []byte("ssh-ed25519 garbage") }},
		{"no CA key", "user_ca_public_key", func(a *rpc.SSHAccess) { a.UserCaPublicKey = nil }},
		{"two CA keys", "user_ca_public_key", func(a *rpc.SSHAccess) {
			a.UserCaPublicKey = append(a.UserCaPublicKey, ssh.MarshalAuthorizedKey(other.PublicKey())...)
		}},
		{"login ../etc", "principals_by_login", func(a *rpc.SSHAccess) {
			a.PrincipalsByLogin["../etc"] = &rpc.Principals{Principals: []string{"deploy@web-1"}}
		}},
		{"another login's principal", "principals_by_login", func(a *rpc.SSHAccess) {
			a.PrincipalsByLogin["deploy"] = &rpc.Principals{Principals: []string{"root@web-1"}}
		}},
		{"principal with a newline", "principals_by_login", func(a *rpc.SSHAccess) {
			a.PrincipalsByLogin["deploy"] = &rpc.Principals{Principals: []string{"deploy@web-1\nroot@web-1"}}
		}},
		{"serial 0", "revoked_serials", func(a *rpc.SSHAccess) { a.RevokedSerials = []uint64{0} }},
		{"empty key id", "revoked_key_ids", func(a *rpc.SSHAccess) { a.RevokedKeyIds = []string{""} }},
		{"host cert for another key", "host_certificate", func(a *rpc.SSHAccess) { a.HostCertificate = hostCert(t, f.hostCA, other.PublicKey()) }},
		{"host cert is a plain key", "host_certificate", func(a *rpc.SSHAccess) {
			a.HostCertificate = ssh.MarshalAuthorizedKey(f.hostKey.PublicKey())
		}},
		{"host cert is a user cert", "host_certificate", func(a *rpc.SSHAccess) {
			c := &ssh.Certificate{Key: f.hostKey.PublicKey(), CertType: ssh.UserCert, Serial: 1, ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
			if err := c.SignCert(rand.Reader, f.hostCA); err != nil {
				t.Fatal(err)
			}
			a.HostCertificate = ssh.MarshalAuthorizedKey(c)
		}},
		{"host cert garbage", "host_certificate", func(a *rpc.SSHAccess) { a.HostCertificate = []byte("nope") }},
	} {
		before := snapshot(t, f.dir)
		acc := f.access(t)
		acc.Index = 100
		tc.mod(acc)
		changed, err := f.m.Apply(ctx, acc)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want a FieldError on %s", tc.name, err, tc.field)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
		if changed || !reflect.DeepEqual(snapshot(t, f.dir), before) {
			t.Errorf("%s: files changed", tc.name)
		}
	}
	if n := f.reloads(t); n != 1 {
		t.Errorf("%d reloads, want only the first Apply's", n)
	}
}

// TestReloadFailureIsRetried: a failing reload command is an error with its
// output, and the next Apply runs it again even though nothing changed.
func TestReloadFailureIsRetried(t *testing.T) {
	f := newFixture(t)
	flag := filepath.Join(t.TempDir(), "ok")
	m, err := New(Config{Dir: f.dir, HostKeyPath: f.m.cfg.HostKeyPath, Reload: []string{"sh", "-c", "test -e " + flag + " || { echo sshd said no >&2; exit 3; }"}})
	if err != nil {
		t.Fatal(err)
	}
	acc := f.access(t)
	_, err = m.Apply(context.Background(), acc)
	if !errors.Is(err, ErrReload) || !strings.Contains(err.Error(), "sshd said no") {
		t.Fatalf("failing reload: %v", err)
	}
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(context.Background(), acc); err != nil || m.Reloads() != 1 {
		t.Fatalf("retry: %v, %d reloads", err, m.Reloads())
	}
	if _, err := m.Apply(context.Background(), acc); err != nil || m.Reloads() != 1 {
		t.Fatalf("after a good reload: %v, %d reloads", err, m.Reloads())
	}

	// A hanging reload is cut at the timeout.
	m2, err := New(Config{Dir: f.dir, HostKeyPath: f.m.cfg.HostKeyPath, Reload: []string{"sleep", "30"}, ReloadTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := m2.Apply(context.Background(), acc); !errors.Is(err, ErrReload) || time.Since(start) > 20*time.Second {
		t.Fatalf("hanging reload: %v after %s", err, time.Since(start))
	}
}

func TestHostKeys(t *testing.T) {
	f := newFixture(t)
	hk, err := f.m.HostKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(hk.PublicKeys) != 1 || string(hk.PublicKeys[0]) != string(ssh.MarshalAuthorizedKey(f.hostKey.PublicKey())) {
		t.Fatalf("host keys: %q", hk.PublicKeys)
	}
	m, err := New(Config{Dir: f.dir, HostKeyPath: filepath.Join(t.TempDir(), "missing.pub")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.HostKeys(); err == nil {
		t.Fatal("missing host key read")
	}
	// A host certificate cannot be checked without the host key.
	if _, err := m.Apply(context.Background(), f.access(t)); err == nil || !strings.Contains(err.Error(), "host_certificate") {
		t.Fatalf("Apply without a readable host key: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Dir: "relative"}, "sshd dir"},
		{Config{Dir: "/etc/with space"}, "sshd dir"},
		{Config{HostKeyPath: "key.pub"}, "sshd host key"},
		{Config{Reload: []string{""}}, "sshd reload"},
		{Config{ReloadTimeout: -time.Second}, "sshd reload timeout"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error on %s", tc.cfg, err, tc.want)
		}
	}
	if err := (&Config{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := New(Config{Dir: filepath.Join(t.TempDir(), "absent")}); err == nil || !strings.Contains(err.Error(), "sshd dir") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestSplitCommand(t *testing.T) {
	for in, want := range map[string][]string{
		"systemctl reload ssh":         {"systemctl", "reload", "ssh"},
		"  kill  -HUP\t42 ":            {"kill", "-HUP", "42"},
		`sh -c 'kill -HUP $(cat /p)'`:  {"sh", "-c", "kill -HUP $(cat /p)"},
		`echo "a \"b\" \$c" d\ e ''`:   {"echo", `a "b" $c`, "d e", ""},
		`/usr/sbin/service ssh reload`: {"/usr/sbin/service", "ssh", "reload"},
	} {
		got, err := SplitCommand(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "   ", "a 'b", `a "b`, `a\`, "systemctl reload ssh && echo", "kill -HUP $(cat pid)", "a;b", `"$x"`, "a > b"} {
		if got, err := SplitCommand(in); err == nil {
			t.Errorf("SplitCommand(%q) = %q, want an error", in, got)
		}
	}
}
