package fsm

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/hpt-dev/hpt/events"
)

func destNames(ds []*Destination) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.GetName())
	}
	return out
}

func TestDestinations(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	a.mustApply(&events.TargetKeyRegistered{Target: "web-1", PublicKey: bytes.Repeat([]byte{7}, 32)})
	a.mustApply(&events.TargetKeyRegistered{Target: "old", PublicKey: bytes.Repeat([]byte{8}, 32)})
	a.mustApply(&events.TargetKeyRevoked{Target: "old"})

	r := a.mustApply(&events.DestinationAdded{Name: "web-1", Kind: events.DestSSH, Addr: "127.0.0.1:22", Connector: "web-1", Labels: map[string]string{"env": "prod"}})
	a.mustApply(&events.DestinationAdded{Name: "redis", Kind: events.DestTCP, Addr: "127.0.0.1:6379", Connector: "web-1"})
	a.mustApply(&events.DestinationAdded{Name: "db-1", Kind: events.DestPostgres, Addr: "db.internal:5432", Database: "app"})

	d, err := f.Destination("web-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.GetKind() != events.DestSSH || d.GetAddr() != "127.0.0.1:22" || d.GetConnector() != "web-1" || d.GetMesh() ||
		!maps.Equal(d.GetLabels(), map[string]string{"env": "prod"}) || d.GetCreated().GetIndex() != r.Index || d.GetCreated().GetActor() != "user:admin" {
		t.Errorf("web-1 = %v", d)
	}
	if d, _ := f.Destination("redis"); !d.GetMesh() {
		t.Error("a tcp destination proposed without mesh was stored without it")
	}
	if d, _ := f.Destination("db-1"); d.GetDatabase() != "app" {
		t.Errorf("db-1 database = %q", d.GetDatabase())
	}
	all, err := f.Destinations()
	if err != nil || strings.Join(destNames(all), ",") != "db-1,redis,web-1" {
		t.Fatalf("Destinations = %v, %v", destNames(all), err)
	}
	of, err := f.DestinationsOfConnector("web-1")
	if err != nil || strings.Join(destNames(of), ",") != "redis,web-1" {
		t.Fatalf("DestinationsOfConnector(web-1) = %v, %v", destNames(of), err)
	}
	if of, err := f.DestinationsOfConnector("web"); err != nil || len(of) != 0 {
		t.Fatalf("DestinationsOfConnector(web) = %v, %v: a prefix of a target name is not that target", destNames(of), err)
	}

	rejected := []struct {
		p    *events.DestinationAdded
		kind error
		want string
	}{
		{&events.DestinationAdded{Name: "web-1", Kind: events.DestSSH, Addr: "h:22"}, ErrExists, `destination "web-1" already exists`},
		{&events.DestinationAdded{Name: "web-2", Kind: events.DestSSH, Addr: "h:22", Connector: "nope"}, ErrNotFound, `connector "nope" is not a registered target`},
		{&events.DestinationAdded{Name: "web-2", Kind: events.DestSSH, Addr: "h:22", Connector: "old"}, ErrConflict, `connector "old" is a revoked target`},
		{&events.DestinationAdded{Name: "web-2", Kind: "sshh", Addr: "h:22"}, ErrInvalid, `kind "sshh"`},
		{&events.DestinationAdded{Name: "web-2", Kind: events.DestTCP, Addr: "h:22"}, ErrInvalid, "connector is required"},
	}
	for _, c := range rejected {
		before := f.AppliedIndex()
		res := a.apply("", c.p)
		if res.Rejected == nil || !errors.Is(res.Rejected, c.kind) || !strings.Contains(res.Rejected.Error(), c.want) {
			t.Errorf("%v: %v, want %v …%s", c.p, res.Rejected, c.kind, c.want)
		}
		if _, err := f.Event(res.Index); !errors.Is(err, ErrNotFound) || f.AppliedIndex() == before {
			t.Errorf("%v: rejected command archived (%v)", c.p, err)
		}
	}
	if d, _ := f.Destination("web-1"); d.GetAddr() != "127.0.0.1:22" {
		t.Error("a refused add changed the existing destination")
	}

	a.mustApply(&events.DestinationRemoved{Name: "web-1"})
	if _, err := f.Destination("web-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed destination: %v", err)
	}
	if of, _ := f.DestinationsOfConnector("web-1"); strings.Join(destNames(of), ",") != "redis" {
		t.Fatalf("after remove, DestinationsOfConnector(web-1) = %v", destNames(of))
	}
	res := a.apply("", &events.DestinationRemoved{Name: "web-1"})
	if !errors.Is(res.Rejected, ErrNotFound) || !strings.Contains(res.Rejected.Error(), `destination "web-1" does not exist`) {
		t.Fatalf("removing an unknown destination: %v", res.Rejected)
	}
}

// Snapshots carry destinations and their connector index.
func TestDestinationsSurviveSnapshot(t *testing.T) {
	src := openTest(t, t.TempDir())
	a := &applier{t: t, f: src}
	a.mustApply(&events.TargetKeyRegistered{Target: "c", PublicKey: bytes.Repeat([]byte{7}, 32)})
	a.mustApply(&events.DestinationAdded{Name: "k8s", Kind: events.DestKubernetes, Connector: "c"})
	dst := openTest(t, t.TempDir())
	if err := dst.Restore(bytes.NewReader(snapshotBytes(t, src))); err != nil {
		t.Fatal(err)
	}
	of, err := dst.DestinationsOfConnector("c")
	if err != nil || len(of) != 1 || of[0].GetName() != "k8s" || !of[0].GetMesh() {
		t.Fatalf("restored DestinationsOfConnector(c) = %v, %v", of, err)
	}
}

// A role privilege on anything but destinations is refused by the state
// machine too, not only at the edge.
func TestGrantScopeRejected(t *testing.T) {
	f := openTest(t, t.TempDir())
	a := &applier{t: t, f: f}
	a.mustApply(&events.UserAdded{Name: "alice"})
	a.mustApply(&events.GrantAdded{Subject: "user:alice", Privilege: "login:deploy", Resource: "destinations/web-*"})
	a.mustApply(&events.GrantAdded{Subject: "user:alice", Privilege: "kube:view", Resource: "destinations/prod/*"})
	for _, c := range [][2]string{{"login:deploy", "*"}, {"login:deploy", "targets/*"}, {"login:Root", "destinations/*"}, {"provision", "destinations/*"}} {
		res := a.apply("", &events.GrantAdded{Subject: "user:alice", Privilege: c[0], Resource: c[1]})
		if !errors.Is(res.Rejected, ErrInvalid) {
			t.Errorf("grant %s %s: %v, want refused", c[0], c[1], res.Rejected)
		}
	}
}
