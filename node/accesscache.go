package node

import (
	"sync"

	"github.com/hpt-dev/hpt/fsm"
)

// accessCacheMax bounds each map of the access cache; a full map is
// emptied rather than evicted piecemeal, which keeps the cache simple and
// is rare (it takes that many distinct tokens or subjects).
const accessCacheMax = 16384

// accessCache keeps what authorization reads from the state (tokens, group
// expansions, grants) until the state's access generation moves. Every
// call is authorized, but identities, tokens and grants change rarely, so
// the Pebble reads of each call become map lookups. A revocation still
// takes effect as soon as it is applied: the generation moves before the
// applied index does, and an entry read under an older generation is never
// served.
type accessCache struct {
	f *fsm.FSM

	mu     sync.Mutex
	gen    uint64
	tokens map[string]*fsm.Token
	groups map[string][]string
	grants map[string][]*fsm.Grant
}

func newAccessCache(f *fsm.FSM) *accessCache {
	c := &accessCache{f: f}
	c.resetLocked(f.AccessGeneration())
	return c
}

func (c *accessCache) resetLocked(gen uint64) {
	c.gen = gen
	c.tokens = map[string]*fsm.Token{}
	c.groups = map[string][]string{}
	c.grants = map[string][]*fsm.Grant{}
}

// cachedRead returns m[key] if it was read under the current generation,
// and otherwise reads it and remembers it. Errors (a token not found, say)
// are not remembered. Values are shared: callers must not modify them.
func cachedRead[V any](c *accessCache, m func() map[string]V, key string, read func(string) (V, error)) (V, error) {
	gen := c.f.AccessGeneration()
	c.mu.Lock()
	if c.gen != gen {
		c.resetLocked(gen)
	}
	if v, ok := m()[key]; ok {
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	// Read outside the lock. If the generation moves meanwhile, what we
	// store is tagged with the old one and dropped at the next lookup.
	v, err := read(key)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.gen == gen {
		mm := m()
		if len(mm) >= accessCacheMax {
			clear(mm)
		}
		mm[key] = v
	}
	c.mu.Unlock()
	return v, nil
}

func (c *accessCache) token(id string) (*fsm.Token, error) {
	return cachedRead(c, func() map[string]*fsm.Token { return c.tokens }, id, c.f.Token)
}

func (c *accessCache) groupsOf(subject string) ([]string, error) {
	return cachedRead(c, func() map[string][]string { return c.groups }, subject, c.f.GroupsOf)
}

func (c *accessCache) grantsOf(subject string) ([]*fsm.Grant, error) {
	return cachedRead(c, func() map[string][]*fsm.Grant { return c.grants }, subject, c.f.Grants)
}
