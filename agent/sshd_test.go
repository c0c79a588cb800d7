package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/internal/testenv"
	"github.com/hpt-dev/hpt/internal/testlog"
	"github.com/hpt-dev/hpt/rpc"
)

func sshAccessFor(t *testing.T, index uint64, logins ...string) *rpc.SSHAccess {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	acc := &rpc.SSHAccess{Index: index, UserCaPublicKey: ssh.MarshalAuthorizedKey(ca), PrincipalsByLogin: map[string]*rpc.Principals{}}
	for _, l := range logins {
		acc.PrincipalsByLogin[l] = &rpc.Principals{Principals: []string{l + "@web-1"}}
	}
	return acc
}

// TestSSHDApplierAppliesTheLatest: states offered while one is being
// applied collapse into the latest, which is what ends up on disk; bad
// state is logged and the next good one still applies.
func TestSSHDApplierAppliesTheLatest(t *testing.T) {
	dir := t.TempDir()
	m, err := sshaccess.New(sshaccess.Config{Dir: dir, HostKeyPath: filepath.Join(dir, "none.pub"), Reload: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	s := newSSHDApplier(m, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	defer func() { cancel(); <-done }()

	bad := sshAccessFor(t, 1, "deploy")
	bad.PrincipalsByLogin["../etc"] = &rpc.Principals{}
	s.offer(bad)
	for i := uint64(2); i <= 20; i++ {
		s.offer(sshAccessFor(t, i, "u"+strings.Repeat("x", int(i))))
	}
	last := filepath.Join(dir, "hpt", "principals", "u"+strings.Repeat("x", 20))
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := os.Stat(last)
		return err
	})
	entries, err := os.ReadDir(filepath.Join(dir, "hpt", "principals"))
	if err != nil || len(entries) != 1 {
		t.Fatalf("principals dir holds %d files (%v), want only the latest state's", len(entries), err)
	}
}

// TestSSHAccessIgnoredWithoutManagement: an agent not managing sshd logs
// once that it ignores SSH access state, and writes nothing.
func TestSSHAccessIgnoredWithoutManagement(t *testing.T) {
	var logs testlog.Buffer
	a := &Agent{log: slog.New(slog.NewTextHandler(&logs, nil))}
	for i := range 3 {
		a.sshAccess(sshAccessFor(t, uint64(i+1), "deploy"))
	}
	if n := strings.Count(logs.String(), "does not manage sshd"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
}
