package node

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/fsm"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// Shape of the authorization benchmark state (issue: 100,000 grants and
// 10,000 groups).
const (
	benchGroups      = 10_000
	benchGrants      = 100_000
	benchUsers       = 2_000
	benchUserGroups  = 5   // direct groups per user
	benchGroupParent = 100 // group i (i >= 100) is a member of group i/100
)

// cacheState is authState without the catch-up for unknown tokens, which
// needs a cluster.
type cacheState struct{ c *accessCache }

func (s cacheState) Token(id string) (*fsm.Token, error)         { return s.c.token(id) }
func (s cacheState) GroupsOf(subject string) ([]string, error)   { return s.c.groupsOf(subject) }
func (s cacheState) Grants(subject string) ([]*fsm.Grant, error) { return s.c.grantsOf(subject) }

// benchAccessState builds a state with the benchmark's shape: users in
// groups, groups nested two deep, grants on groups with target globs, and
// one token per user.
func benchAccessState(b *testing.B) (*fsm.FSM, []auth.Token) {
	b.Helper()
	f := openState(b)
	var index uint64
	var batch []proto.Message
	flush := func() {
		applyEvents(b, f, &index, batch...)
		batch = batch[:0]
	}
	add := func(p proto.Message) {
		if batch = append(batch, p); len(batch) == 512 {
			flush()
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for g := range benchGroups {
		add(&events.GroupAdded{Name: fmt.Sprintf("g%05d", g)})
	}
	for g := benchGroupParent; g < benchGroups; g++ {
		add(&events.GroupMemberAdded{Group: fmt.Sprintf("g%05d", g/benchGroupParent), Member: fmt.Sprintf("group:g%05d", g)})
	}
	privs := []string{events.PrivView, events.PrivProvision, events.PrivKeys}
	for i := range benchGrants {
		add(&events.GrantAdded{
			Subject:   fmt.Sprintf("group:g%05d", i%benchGroups),
			Privilege: privs[i%len(privs)],
			Resource:  fmt.Sprintf("targets/web-%d-*", i/benchGroups),
		})
	}
	toks := make([]auth.Token, benchUsers)
	for u := range benchUsers {
		name := fmt.Sprintf("u%04d", u)
		add(&events.UserAdded{Name: name})
		first := rng.IntN(benchGroups - benchGroupParent)
		for k := range benchUserGroups {
			g := benchGroupParent + (first+k*1979)%(benchGroups-benchGroupParent)
			add(&events.GroupMemberAdded{Group: fmt.Sprintf("g%05d", g), Member: "user:" + name})
		}
		tok, err := auth.NewToken()
		if err != nil {
			b.Fatal(err)
		}
		sum := tok.SecretSHA256()
		add(&events.TokenCreated{Id: tok.ID, SecretSha256: sum[:], Subject: "user:" + name})
		toks[u] = tok
	}
	flush()
	return f, toks
}

// BenchmarkAuthCheck measures one grant check (a user's groups expanded
// through two levels of nesting, then their grants matched against a
// target) with 100,000 grants and 10,000 groups in state. "cached" is the
// node's path between changes to access state; "pebble" reads the state on
// every check, as a node does right after such a change (and as nodes did
// before the access cache), and is the peer the cached figure is a ratio of.
func BenchmarkAuthCheck(b *testing.B) {
	f, _ := benchAccessState(b)
	for _, mode := range []string{"cached", "pebble"} {
		b.Run(mode, func(b *testing.B) {
			var state auth.State = f
			if mode == "cached" {
				state = cacheState{newAccessCache(f)}
			}
			a := auth.NewAuthorizer(state, nil, nil)
			// Between changes to access state the cache is warm: every
			// user has called before.
			for u := range benchUsers {
				if _, err := a.Check(fmt.Sprintf("user:u%04d", u), events.PrivProvision, "targets/x"); err != nil {
					b.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(3, 4))
			durations := make([]time.Duration, 0, b.N)
			allowed := 0
			b.ResetTimer()
			for range b.N {
				subject := fmt.Sprintf("user:u%04d", rng.IntN(benchUsers))
				// Half the checks ask for targets no grant covers: a
				// denial looks at every grant the user holds.
				resource := fmt.Sprintf("targets/web-%d-%d", rng.IntN(2*benchGrants/benchGroups), rng.IntN(100))
				start := time.Now()
				d, err := a.Check(subject, events.PrivProvision, resource)
				durations = append(durations, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if d.Allowed {
					allowed++
				}
			}
			b.StopTimer()
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(durations[len(durations)*99/100].Nanoseconds())/1e3, "p99-µs")
			b.ReportMetric(float64(allowed)/float64(b.N), "allowed")
		})
	}
}

// BenchmarkAuthenticate measures token validation (parse, look up, hash the
// secret, compare in constant time) from all CPUs, with 2,000 tokens in
// state; "sha256" hashes the secret alone and is the peer.
func BenchmarkAuthenticate(b *testing.B) {
	f, toks := benchAccessState(b)
	a := auth.NewAuthorizer(cacheState{newAccessCache(f)}, nil, nil)
	secrets := make([]string, len(toks))
	for i, t := range toks {
		secrets[i] = t.Secret()
	}
	b.Run("cached", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(secrets))
			for pb.Next() {
				if _, err := a.Authenticate(secrets[i%len(secrets)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("sha256", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(toks))
			for pb.Next() {
				toks[i%len(toks)].SecretSHA256()
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	})
}
