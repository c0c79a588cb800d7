package agent_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hpt-dev/hpt/agent/sshaccess"
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// TestConnectorAgentStaysConnected: an agent managing sshd reports its
// host keys on its stream, and the node takes them: the stream stays up
// and jobs run as on any agent.
func TestConnectorAgentStaysConnected(t *testing.T) {
	c := nodetest.Start(t, 1)
	dir := t.TempDir()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hk, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key.pub")
	if err := os.WriteFile(hostKey, ssh.MarshalAuthorizedKey(hk), 0o644); err != nil {
		t.Fatal(err)
	}
	c.StartAgent("web-1", nodetest.AgentOptions{SSHD: &sshaccess.Config{Dir: dir, HostKeyPath: hostKey, Reload: []string{"true"}}})
	c.WaitConnected("web-1")
	cl := c.Client(0)
	marker := filepath.Join(dir, "ran")
	resp, err := cl.Jobs.Submit(ctx(t), &rpc.SubmitJobRequest{Name: "j.toml", Targets: "web-1", MaxFailures: -1,
		Config: []byte(fmt.Sprintf("[[exec]]\nscript = \"touch %s\"\n", marker))})
	if err != nil {
		t.Fatal(err)
	}
	c.Eventually(20*time.Second, func() error {
		info, err := cl.Jobs.Get(ctx(t), &rpc.GetJobRequest{JobId: resp.GetJobId()})
		if err != nil || info.GetJobStatus() != events.JobStatus_JOB_STATUS_DONE {
			return fmt.Errorf("job %s: %v %v", resp.GetJobId(), info.GetStatus(), err)
		}
		return nil
	})
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the job did not run: %v", err)
	}
}
