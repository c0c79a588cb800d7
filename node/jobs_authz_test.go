package node_test

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/node/nodetest"
	"github.com/hpt-dev/hpt/provconfig"
	"github.com/hpt-dev/hpt/rpc"
)

// userClient adds user name with the given grants (privilege, resource
// pairs) and returns a client using a token of theirs.
func userClient(t *testing.T, c *nodetest.Cluster, admin *rpc.Client, name string, grants ...string) *rpc.Client {
	t.Helper()
	ctx := ctxT(t)
	if _, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: name}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(grants); i += 2 {
		if _, err := admin.Grants.Add(ctx, &rpc.GrantRequest{Subject: "user:" + name, Privilege: grants[i], Resource: grants[i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.Tokens.Create(ctx, &rpc.CreateTokenRequest{Subject: "user:" + name})
	if err != nil {
		t.Fatal(err)
	}
	return c.ClientFor(tok.GetToken(), c.Addrs()...)
}

const brokenConfig = "[[file]]\nperms = 0600\n"

// A caller is authorized before anything else happens, and a denial names
// no target, and tells no job id, that the caller may not see.
func TestJobDenialsNameNothingHidden(t *testing.T) {
	c := nodetest.Start(t, 1)
	admin := c.Client(0)
	c.RegisterTarget("web-1", t.TempDir())
	c.RegisterTarget("db-1", t.TempDir())
	bob := userClient(t, c, admin, "bob", "provision", "targets/web-*")
	eve := userClient(t, c, admin, "eve")
	carol := userClient(t, c, admin, "carol", "view", "targets/*")
	good := []byte("[[exec]]\nscript = \"true\"\n")

	t.Run("submit", func(t *testing.T) {
		for _, tc := range []struct {
			who  string
			cl   *rpc.Client
			req  *rpc.SubmitJobRequest
			hide bool // the denial must not name db-1
		}{
			{"bob all", bob, &rpc.SubmitJobRequest{Config: good, Targets: "*"}, true},
			{"bob db-*", bob, &rpc.SubmitJobRequest{Config: good, Targets: "db-*"}, true},
			{"bob selector", bob, &rpc.SubmitJobRequest{Config: good, Selector: map[string]string{"role": "db"}}, true},
			{"bob class", bob, &rpc.SubmitJobRequest{Config: good, Targets: "[wd]*", Preview: true}, true},
			{"bob no match", bob, &rpc.SubmitJobRequest{Config: good, Targets: "x*"}, true},
			{"bob broken config", bob, &rpc.SubmitJobRequest{Config: []byte(brokenConfig), Targets: "db-*"}, true},
			{"eve broken config", eve, &rpc.SubmitJobRequest{Config: []byte(brokenConfig), Targets: "web-1"}, true},
			{"eve oversized config", eve, &rpc.SubmitJobRequest{Config: bytes.Repeat([]byte("#"), provconfig.MaxBundleSize+1), Targets: "web-1"}, true},
			// carol may list the targets: her denial may name db-1, but
			// still comes before her broken config is looked at.
			{"carol broken config", carol, &rpc.SubmitJobRequest{Config: []byte(brokenConfig), Targets: "*"}, false},
		} {
			tc.req.Name = "x.toml"
			_, err := tc.cl.Jobs.Submit(ctxT(t), tc.req)
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("%s: %v, want PermissionDenied", tc.who, err)
				continue
			}
			if tc.hide && strings.Contains(err.Error(), "db-1") {
				t.Errorf("%s: the denial names db-1, which the caller may not see: %v", tc.who, err)
			}
		}
		// Within its grants bob is served.
		resp, err := bob.Jobs.Submit(ctxT(t), &rpc.SubmitJobRequest{Name: "x.toml", Config: good, Targets: "web-*", Preview: true})
		if err != nil || len(resp.GetTargets()) != 1 || resp.GetTargets()[0] != "web-1" {
			t.Errorf("bob's preview of web-*: %v, %v", resp.GetTargets(), err)
		}
		// And a bad config of an authorized caller is still named.
		_, err = bob.Jobs.Submit(ctxT(t), &rpc.SubmitJobRequest{Name: "x.toml", Config: []byte(brokenConfig), Targets: "web-*"})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "x.toml:2") {
			t.Errorf("bob's broken config: %v, want InvalidArgument at x.toml:2", err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		job := submit(t, admin, &rpc.SubmitJobRequest{Config: good, Targets: "db-1"})
		id := job.GetJobId()
		const missing = "j-00000000-deadbeef"
		var msgs []string
		for _, jobID := range []string{id, missing} {
			_, err := bob.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: jobID})
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("bob cancelling %s: %v, want PermissionDenied", jobID, err)
			}
			msgs = append(msgs, strings.ReplaceAll(status.Convert(err).Message(), jobID, "ID"))
		}
		if msgs[0] != msgs[1] {
			t.Errorf("denials differ between an existing and a missing job:\n%s\n%s", msgs[0], msgs[1])
		}
		if strings.Contains(msgs[0], "db-1") {
			t.Errorf("the denial names db-1: %s", msgs[0])
		}
		// Whoever may view jobs learns that a job does not exist.
		if _, err := admin.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: missing}); status.Code(err) != codes.NotFound {
			t.Errorf("admin cancelling a missing job: %v, want NotFound", err)
		}
		if _, err := admin.Jobs.Cancel(ctxT(t), &rpc.CancelJobRequest{JobId: id}); err != nil {
			t.Errorf("admin cancelling %s: %v", id, err)
		}
	})
}

// Each input is refused by its own limit, named, before the size of the
// message or event that carries it matters.
func TestInputLimits(t *testing.T) {
	c := nodetest.Start(t, 1)
	admin := c.Client(0)
	c.RegisterTarget("web-1", t.TempDir())
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		call func() error
		want []string
	}{
		{"7 MiB user name", func() error {
			_, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "user", Name: strings.Repeat("a", 7<<20)})
			return err
		}, []string{"name", "at most 253"}},
		{"long description", func() error {
			_, err := admin.Identities.Add(ctx, &rpc.AddIdentityRequest{Kind: "machine", Name: "ci", Description: strings.Repeat("d", events.MaxTextLen+1)})
			return err
		}, []string{"description", "at most 1024"}},
		{"bundle over its limit", func() error {
			_, err := admin.Jobs.Submit(ctx, &rpc.SubmitJobRequest{Name: "big.toml", Config: []byte("[[exec]]\nscript = \"true\"\n"),
				Files: map[string][]byte{"blob": make([]byte, provconfig.MaxBundleSize)}, Targets: "web-1"})
			return err
		}, []string{"bundle big.toml", "3 MiB"}},
		{"vars over their limit", func() error {
			_, err := admin.Jobs.Submit(ctx, &rpc.SubmitJobRequest{Name: "v.toml", Config: []byte("[[exec]]\nscript = \"true\"\n"),
				Vars: map[string]string{"x": strings.Repeat("v", provconfig.MaxVarsSize)}, Targets: "web-1"})
			return err
		}, []string{"vars", "64 KiB"}},
		{"labels at registration", func() error {
			_, err := admin.Keys.Register(ctx, &rpc.RegisterKeyRequest{Target: "web-2", PublicKey: make([]byte, 32), Labels: map[string]string{"role": strings.Repeat("r", events.MaxLabelValueLen+1)}})
			return err
		}, []string{"labels", "role", "at most 253"}},
		{"selector", func() error {
			_, err := admin.Jobs.Submit(ctx, &rpc.SubmitJobRequest{Name: "s.toml", Config: []byte("[[exec]]\nscript = \"true\"\n"), Selector: map[string]string{"bad key": "x"}})
			return err
		}, []string{"selector", "bad key"}},
	} {
		err := tc.call()
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", tc.name, err)
			continue
		}
		msg := status.Convert(err).Message()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q does not say %q", tc.name, msg, w)
			}
		}
		if strings.Contains(msg, "event") || strings.Contains(msg, "grpc:") {
			t.Errorf("%s: refused by the size of a message or event, not its own limit: %q", tc.name, msg)
		}
	}
}

// TestNoMatchNamesTheRequestAsTyped: a job that matches no target is
// refused with the flags it was given, a selector as k=v,k2=v2 (as
// --selector takes it, not Go's map[...]) and no flag it was not given.
func TestNoMatchNamesTheRequestAsTyped(t *testing.T) {
	c := nodetest.Start(t, 1)
	admin := c.Client(0)
	c.RegisterTarget("web-1", t.TempDir())
	good := []byte("[[exec]]\nscript = \"true\"\n")
	for _, tc := range []struct {
		req  *rpc.SubmitJobRequest
		want string
		not  []string
	}{
		{&rpc.SubmitJobRequest{Targets: "web-*", Selector: map[string]string{"zone": "a", "role": "db"}}, `target matching --targets "web-*" and --selector role=db,zone=a`, []string{"map["}},
		{&rpc.SubmitJobRequest{Selector: map[string]string{"role": "db"}}, `target matching --selector role=db`, []string{"map[", "--targets"}},
		{&rpc.SubmitJobRequest{Targets: "db-*"}, `target matching --targets "db-*"`, []string{"map[", "--selector"}},
	} {
		tc.req.Name, tc.req.Config = "x.toml", good
		_, err := admin.Jobs.Submit(ctxT(t), tc.req)
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("%v: %v, want FailedPrecondition", tc.req.GetSelector(), err)
			continue
		}
		msg := status.Convert(err).Message()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("refusal %q lacks %q", msg, tc.want)
		}
		for _, not := range tc.not {
			if strings.Contains(msg, not) {
				t.Errorf("refusal %q has %q", msg, not)
			}
		}
	}
}
