package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/internal/secrettest"
)

// TestCAUpgradeOfAnOldKeystore: a server started with a cluster keystore
// made before the SSH CAs serves, warns once naming the upgrade command,
// and `hpt ca show` says what to run; `hpt init --add-cas` adds the CAs in
// place (a second run changes nothing), and after a restart with that file
// `hpt ca show` prints them, in table and JSON form, as the keystore holds
// them. No private half is printed by any of it.
func TestCAUpgradeOfAnOldKeystore(t *testing.T) {
	dir := t.TempDir()
	keys, err := keystore.NewClusterSecrets()
	if err != nil {
		t.Fatal(err)
	}
	keys.SSH = keystore.SSHCAs{} // as hpt init wrote it before the CAs
	ksDir := filepath.Join(dir, "keys")
	if err := os.Mkdir(ksDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ksPath := filepath.Join(ksDir, clusterKeystoreName)
	if err := keystore.WriteCluster(ksPath, keys); err != nil {
		t.Fatal(err)
	}

	s := &server{name: "n1", dataDir: filepath.Join(dir, "n1")}
	s.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.gossip = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.args = []string{"server", "--name", s.name, "--keystore", ksPath, "--data-dir", s.dataDir,
		"--listen", s.addr, "--gossip", s.gossip, "--bootstrap-expect", "1", "--log-level", "warn"}
	logPath := filepath.Join(dir, "n1.log")
	if s.log, err = os.Create(logPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.kill()
		s.log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("server log:\n%s", b)
		}
	})
	s.start(t)
	e := env{"HOME": dir, "HPT_TOKEN": keys.Admin.Secret(), "HPT_CLUSTER_KEY": keys.Fingerprint(), "HPT_ADDR": s.addr}
	waitFor(t, 30*time.Second, func() error {
		if r := hpt(t, e, "whoami"); r.code != 0 {
			return fmt.Errorf("whoami: %s", r.stderr)
		}
		return nil
	})

	r := hpt(t, e, "ca", "show")
	if r.code != exitFailure || !strings.Contains(r.stderr, "hpt init --add-cas") {
		t.Fatalf("ca show without CAs: exit %d, stderr %q; want 1 and the upgrade command", r.code, r.stderr)
	}
	b, _ := os.ReadFile(logPath)
	if n := strings.Count(string(b), "no SSH CAs"); n != 1 || !strings.Contains(string(b), "hpt init --add-cas") {
		t.Fatalf("server log has %d warnings about missing SSH CAs, want 1 naming the command:\n%s", n, b)
	}

	// The upgrade runs on the keystore in place while the server runs (a
	// node reads its keystore at start and does not hold it).
	r = hpt(t, e, "init", "--add-cas", ksDir)
	if r.code != 0 || !strings.Contains(r.stderr, "user CA and host CA") || !strings.Contains(r.stderr, "same file to every server node") {
		t.Fatalf("init --add-cas: exit %d\nstderr: %s", r.code, r.stderr)
	}
	ks, err := keystore.Open(ksPath)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := ks.SSHCAs()
	ks.Close()
	if err != nil || !cas.Complete() {
		t.Fatalf("after --add-cas the keystore holds %v (%v)", cas, err)
	}
	needles := secrettest.Needles{}.Ed25519("user CA", cas.User).Ed25519("host CA", cas.Host)
	needles.Check(t, "init --add-cas output", []byte(r.stdout+r.stderr))
	if r := hpt(t, e, "init", "--add-cas", ksPath); r.code != 0 || !strings.Contains(r.stderr, "nothing changed") {
		t.Fatalf("second init --add-cas: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if r := hpt(t, e, "init", "--add-cas", ksPath, "--out", dir); r.code != exitUsage {
		t.Fatalf("init --add-cas with --out: exit %d, want %d", r.code, exitUsage)
	}
	if r := hpt(t, e, "init", "--add-cas", filepath.Join(dir, "missing.db")); r.code != exitUsage || !strings.Contains(r.stderr, "missing.db") {
		t.Fatalf("init --add-cas of a missing file: exit %d, stderr %q", r.code, r.stderr)
	}

	s.kill()
	s.start(t)
	waitFor(t, 30*time.Second, func() error {
		if r := hpt(t, e, "ca", "show"); r.code != 0 {
			return fmt.Errorf("ca show: %s", r.stderr)
		}
		return nil
	})
	userPub, _ := ssh.NewPublicKey(cas.User.Public())
	hostPub, _ := ssh.NewPublicKey(cas.Host.Public())
	var shown caJSON
	r = hpt(t, e, "ca", "show", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || r.code != 0 {
		t.Fatalf("ca show -o json: %v, exit %d: %s %s", err, r.code, r.stdout, r.stderr)
	}
	var fields map[string]map[string]any
	json.Unmarshal([]byte(strings.Replace(r.stdout, `"known_hosts"`, `"_"`, 1)), &fields)
	for _, k := range []string{"user_ca", "host_ca"} {
		if _, ok := fields[k]["public_key"]; !ok {
			t.Errorf("ca show -o json has no %s.public_key: %s", k, r.stdout)
		}
	}
	want := caJSON{
		UserCA:     caKeyJSON{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(userPub))), Fingerprint: ssh.FingerprintSHA256(userPub)},
		HostCA:     caKeyJSON{PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub))), Fingerprint: ssh.FingerprintSHA256(hostPub)},
		KnownHosts: "@cert-authority * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostPub))),
	}
	if shown != want {
		t.Fatalf("ca show -o json = %+v\nwant %+v", shown, want)
	}
	table := mustHPT(t, e, "ca", "show")
	for _, line := range []string{want.UserCA.PublicKey, want.KnownHosts} {
		if !strings.Contains(table, "\n"+line+"\n") {
			t.Errorf("ca show does not print the line %q:\n%s", line, table)
		}
	}
	if !strings.Contains(table, want.UserCA.Fingerprint) || !strings.Contains(table, want.HostCA.Fingerprint) {
		t.Errorf("ca show does not print the fingerprints:\n%s", table)
	}
	b, _ = os.ReadFile(logPath)
	needles.Check(t, "the server's log", b)
}

// TestInitMakesSSHCAs: a new cluster keystore holds both CAs, and init
// prints their fingerprints, never their private halves.
func TestInitMakesSSHCAs(t *testing.T) {
	dir := t.TempDir()
	r := hpt(t, env{"HOME": dir}, "init", "--out", dir)
	if r.code != 0 {
		t.Fatalf("init: exit %d: %s", r.code, r.stderr)
	}
	ks, err := keystore.Open(filepath.Join(dir, clusterKeystoreName))
	if err != nil {
		t.Fatal(err)
	}
	cas, err := ks.SSHCAs()
	ks.Close()
	if err != nil || !cas.Complete() {
		t.Fatalf("init's keystore holds SSH CAs %v (%v), want both", cas, err)
	}
	for _, fp := range []string{keystore.CAFingerprint(cas.User), keystore.CAFingerprint(cas.Host)} {
		if !strings.Contains(r.stderr, fp) {
			t.Errorf("init does not print the CA fingerprint %s:\n%s", fp, r.stderr)
		}
	}
	secrettest.Needles{}.Ed25519("user CA", cas.User).Ed25519("host CA", cas.Host).Check(t, "init's output", []byte(r.stdout+r.stderr))
}
