package node_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/internal/keystore"
	"github.com/hpt-dev/hpt/internal/secrettest"
	"github.com/hpt-dev/hpt/internal/testlog"
	"github.com/hpt-dev/hpt/node"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/rpc"
)

// captureLogs makes every node of a test cluster log at debug level into
// one buffer per node.
func captureLogs(bufs []*testlog.Buffer) nodetest.Options {
	return nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(bufs[i], &slog.HandlerOptions{Level: slog.LevelDebug})).With("n", cfg.Name)
	}}
}

func newBuffers(n int) []*testlog.Buffer {
	bufs := make([]*testlog.Buffer, n)
	for i := range bufs {
		bufs[i] = &testlog.Buffer{}
	}
	return bufs
}

// userWithToken adds user:name with the given grants and returns a token.
func userWithToken(t *testing.T, c *nodetest.Cluster, name string, grants ...*rpc.GrantRequest) string {
	t.Helper()
	ctx := ctxT(t)
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: events.KindUser, Name: name}); err != nil {
		t.Fatal(err)
	}
	for _, g := range grants {
		g.Subject = events.KindUser + ":" + name
		if _, err := admin.Grants.Add(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: events.KindUser + ":" + name})
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEvent(admin.LastIndex())
	return tok.GetToken()
}

// TestCAShow: every node answers with the public halves of the cluster's
// CAs, in the formats sshd and known_hosts take, to a caller with view;
// a caller without view is refused.
func TestCAShow(t *testing.T) {
	c := nodetest.Start(t, 2)
	ctx := ctxT(t)
	wantUser, err := ssh.NewPublicKey(c.SSHCAs.User.Public())
	if err != nil {
		t.Fatal(err)
	}
	wantHost, err := ssh.NewPublicKey(c.SSHCAs.Host.Public())
	if err != nil {
		t.Fatal(err)
	}
	viewer := userWithToken(t, c, "viewer", &rpc.GrantRequest{Privilege: events.PrivView, Resource: "*"})
	nobody := userWithToken(t, c, "nobody")
	needles := secrettest.Needles{}.Ed25519("user CA", c.SSHCAs.User).Ed25519("host CA", c.SSHCAs.Host)
	for i := range c.Len() {
		resp, err := rpc.NewCAClient(c.ClientFor(viewer, c.Node(i).Addr()).Conn()).Show(ctx, &rpc.ShowCARequest{})
		if err != nil {
			t.Fatalf("node %d: CA.Show with view: %v", i, err)
		}
		for _, k := range []struct {
			what string
			got  *rpc.CAPublicKey
			want ssh.PublicKey
		}{{"user CA", resp.GetUserCa(), wantUser}, {"host CA", resp.GetHostCa(), wantHost}} {
			pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k.got.GetPublicKey()))
			if err != nil || len(rest) != 0 || !bytes.Equal(pub.Marshal(), k.want.Marshal()) || pub.Type() != ssh.KeyAlgoED25519 {
				t.Errorf("node %d: %s public key %q (%v), want the cluster's %s", i, k.what, k.got.GetPublicKey(), err, k.what)
			}
			if k.got.GetFingerprint() != ssh.FingerprintSHA256(k.want) {
				t.Errorf("node %d: %s fingerprint %s, want %s", i, k.what, k.got.GetFingerprint(), ssh.FingerprintSHA256(k.want))
			}
		}
		marker, rest, ok := strings.Cut(resp.GetKnownHosts(), " * ")
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(rest))
		if !ok || marker != "@cert-authority" || err != nil || !bytes.Equal(pub.Marshal(), wantHost.Marshal()) {
			t.Errorf("node %d: known_hosts line %q, want @cert-authority * and the host CA", i, resp.GetKnownHosts())
		}
		wire, _ := proto.Marshal(resp)
		needles.Check(t, "CA.Show's answer", append(wire, resp.String()...))

		_, err = rpc.NewCAClient(c.ClientFor(nobody, c.Node(i).Addr()).Conn()).Show(ctx, &rpc.ShowCARequest{})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("node %d: CA.Show without view: %v, want PermissionDenied", i, err)
		}
	}
}

// TestNodeWithoutCAsStarts: a node whose cluster keystore predates the SSH
// CAs joins and serves (so that adding them is a rolling upgrade), warns
// once at start naming the command that adds them, and answers CA.Show
// with FailedPrecondition naming it too; the other nodes are unaffected.
func TestNodeWithoutCAsStarts(t *testing.T) {
	bufs := newBuffers(2)
	opts := captureLogs(bufs)
	capture := opts.Configure
	opts.Configure = func(i int, cfg *node.Config) {
		capture(i, cfg)
		if i == 1 {
			cfg.SSHCAs = node.SSHCAs{}
		}
	}
	c := nodetest.Start(t, 2, opts)
	ctx := ctxT(t)

	_, err := rpc.NewCAClient(c.Client(1).Conn()).Show(ctx, &rpc.ShowCARequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), node.UpgradeCACommand) {
		t.Fatalf("CA.Show on the node without CAs: %v, want FailedPrecondition naming %q", err, node.UpgradeCACommand)
	}
	if _, err := rpc.NewCAClient(c.Client(0).Conn()).Show(ctx, &rpc.ShowCARequest{}); err != nil {
		t.Fatalf("CA.Show on the node with CAs: %v", err)
	}
	// The node without CAs serves writes and reads as any other.
	if _, err := c.Client(1).Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: events.KindUser, Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	warnings := 0
	for _, line := range bufs[1].Lines() {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "no SSH CAs") {
			warnings++
			if !strings.Contains(line, node.UpgradeCACommand) {
				t.Errorf("the warning does not name %q: %s", node.UpgradeCACommand, line)
			}
		}
	}
	if warnings != 1 {
		t.Fatalf("%d warnings about missing SSH CAs, want 1; log:\n%s", warnings, bufs[1].String())
	}
	if strings.Contains(bufs[0].String(), "no SSH CAs") {
		t.Fatal("the node with CAs warned about missing CAs")
	}
}

func TestConfigRefusesHalfTheCAs(t *testing.T) {
	cfg := node.DefaultConfig()
	cas, err := node.SSHCAsFromKeys(mustSSHCAs(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.SSHCAs = node.SSHCAs{User: cas.User}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ssh CAs") {
		t.Fatalf("Validate with only a user CA: %v, want an error naming the ssh CAs", err)
	}
}

// TestSSHCAsNeverLeak: with a real cluster holding the CAs, after writes,
// refused calls, a CA.Show and snapshots, the private halves are in no
// archived event, no snapshot, no log line at debug level, and no file the
// nodes wrote.
func TestSSHCAsNeverLeak(t *testing.T) {
	bufs := newBuffers(3)
	c := nodetest.Start(t, 3, captureLogs(bufs))
	ctx := ctxT(t)
	needles := secrettest.Needles{}.Ed25519("user CA", c.SSHCAs.User).Ed25519("host CA", c.SSHCAs.Host)
	// The needles are good ones: they find a formatted key.
	if found := needles.Find([]byte(fmt.Sprintf("%x", []byte(c.SSHCAs.User)))); len(found) == 0 {
		t.Fatal("the needles do not find a hex-printed key")
	}

	viewer := userWithToken(t, c, "viewer", &rpc.GrantRequest{Privilege: events.PrivView, Resource: "*"})
	admin := c.ClientFor(c.Admin.Secret(), c.Addrs()...)
	for i := range 5 {
		if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: events.KindMachine, Name: fmt.Sprintf("ci-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var answers [][]byte
	for i := range c.Len() {
		resp, err := rpc.NewCAClient(c.ClientFor(viewer, c.Node(i).Addr()).Conn()).Show(ctx, &rpc.ShowCARequest{})
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, []byte(resp.String()))
		// Refused and failing calls: their errors are checked too.
		_, err = rpc.NewCAClient(c.ClientFor("sk_bogus", c.Node(i).Addr()).Conn()).Show(ctx, &rpc.ShowCARequest{})
		if err == nil {
			t.Fatal("CA.Show with a bogus token succeeded")
		}
		answers = append(answers, []byte(err.Error()))
	}
	c.WaitEvent(admin.LastIndex())

	// A snapshot as `hpt cluster snapshot save` takes it, and a Raft
	// snapshot on every node (written to its data dir).
	stream, err := c.Client(0).Cluster.SnapshotSave(ctx, &rpc.SnapshotSaveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		snap.Write(chunk.GetData())
	}
	if snap.Len() == 0 {
		t.Fatal("empty snapshot")
	}
	needles.Check(t, "the snapshot", snap.Bytes())
	for i := range c.Len() {
		if err := c.Node(i).Raft().Snapshot().Error(); err != nil {
			t.Fatalf("node %d: raft snapshot: %v", i, err)
		}
	}

	for i := range c.Len() {
		evs := eventsAfter(t, c.Node(i), 0)
		if len(evs) < 5 {
			t.Fatalf("node %d archived %d events", i, len(evs))
		}
		for _, ev := range evs {
			wire, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			needles.Check(t, fmt.Sprintf("event %d (%s) on node %d", ev.GetIndex(), ev.GetType(), i), append(wire, ev.String()...))
		}
	}
	for _, a := range answers {
		needles.Check(t, "an answer", a)
	}
	// Stop the nodes so that their logs are complete and their state is
	// flushed, then look at every file they wrote.
	c.Stop()
	for i, b := range bufs {
		if len(b.Lines()) < 10 {
			t.Fatalf("node %d logged %d lines at debug level; is the capture working?", i, len(b.Lines()))
		}
		needles.Check(t, fmt.Sprintf("node %d's log", i), []byte(b.String()))
	}
	files := 0
	err = filepath.WalkDir(c.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		needles.Check(t, path, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 6 {
		t.Fatalf("only %d files under %s", files, c.Dir)
	}
}

func mustSSHCAs(t *testing.T) keystore.SSHCAs {
	t.Helper()
	cas, err := keystore.NewSSHCAs()
	if err != nil {
		t.Fatal(err)
	}
	return cas
}
