package fsm

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// read runs fn against the current database, holding off Restore.
func (f *FSM) read(fn func(db *pebble.DB) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return ErrClosed
	}
	return fn(f.db)
}

func (f *FSM) getRecord(k []byte, m proto.Message) (bool, error) {
	var found bool
	err := f.read(func(db *pebble.DB) error {
		var err error
		found, err = getProto(db, k, m)
		return err
	})
	return found, err
}

// scan calls fn for every key and value under prefix, in key order, until
// fn returns false. The slices are only valid during the call.
func (f *FSM) scan(lower, upper []byte, fn func(k, v []byte) (bool, error)) error {
	return f.read(func(db *pebble.DB) error { return scanDB(db, lower, upper, fn) })
}

// scanDB is scan on a given database, for the state being opened or
// restored before the FSM serves it.
func scanDB(db *pebble.DB, lower, upper []byte, fn func(k, v []byte) (bool, error)) error {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		more, err := fn(it.Key(), v)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	return it.Error()
}

func scanRecords[T any, P interface {
	*T
	proto.Message
}](f *FSM, prefix []byte) ([]*T, error) {
	var out []*T
	err := f.read(func(db *pebble.DB) error {
		var err error
		out, err = recordsIn[T, P](db, prefix)
		return err
	})
	return out, err
}

// recordsIn decodes every record under prefix in db.
func recordsIn[T any, P interface {
	*T
	proto.Message
}](db *pebble.DB, prefix []byte) ([]*T, error) {
	var out []*T
	err := scanDB(db, prefix, prefixEnd(prefix), func(k, v []byte) (bool, error) {
		m := P(new(T))
		if err := unmarshalRecord(v, m); err != nil {
			return false, fmt.Errorf("decode record %q: %w", k, err)
		}
		out = append(out, (*T)(m))
		return true, nil
	})
	return out, err
}

// Bootstrapped reports whether the cluster's bootstrap event was applied.
func (f *FSM) Bootstrapped() (bool, error) {
	var idx uint64
	err := f.read(func(db *pebble.DB) error {
		var err error
		idx, err = readU64(db, keyBootstrapped)
		return err
	})
	return idx != 0, err
}

// Identity returns the user, machine or group named by s.
func (f *FSM) Identity(s events.Subject) (*Identity, error) {
	var id Identity
	found, err := f.getRecord(identityKey(s.Kind, s.Name), &id)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s: %w", s, ErrNotFound)
	}
	return &id, nil
}

// Identities lists users, machines or groups (kind) in name order.
func (f *FSM) Identities(kind string) ([]*Identity, error) {
	return scanRecords[Identity](f, key(tagIdentity, kind+"/"))
}

func (f *FSM) subKeys(prefix []byte) ([]string, error) {
	var out []string
	err := f.scan(prefix, prefixEnd(prefix), func(k, _ []byte) (bool, error) {
		out = append(out, string(k[len(prefix):]))
		return true, nil
	})
	return out, err
}

// Members lists the direct members (subjects) of a group.
func (f *FSM) Members(group string) ([]string, error) {
	return f.subKeys(key(tagMember, group, ""))
}

// GroupsOf lists the groups subject belongs to, directly or through nested
// groups, in breadth-first order without repeats.
func (f *FSM) GroupsOf(subject string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	queue := []string{subject}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		groups, err := f.subKeys(key(tagMemberOf, s, ""))
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			if !seen[g] {
				seen[g] = true
				out = append(out, g)
				queue = append(queue, events.KindGroup+":"+g)
			}
		}
	}
	return out, nil
}

// Token returns the token with public id id.
func (f *FSM) Token(id string) (*Token, error) {
	var t Token
	found, err := f.getRecord(key(tagToken, id), &t)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return &t, nil
}

// Tokens lists every token, revoked ones included, by id.
func (f *FSM) Tokens() ([]*Token, error) {
	return scanRecords[Token](f, []byte{tagToken})
}

// TargetKey returns the registered key of a target.
func (f *FSM) TargetKey(target string) (*TargetKey, error) {
	var t TargetKey
	found, err := f.getRecord(key(tagTarget, target), &t)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("target %q: %w", target, ErrNotFound)
	}
	return &t, nil
}

// TargetByKey returns the target whose registered key is pub.
func (f *FSM) TargetByKey(pub []byte) (*TargetKey, error) {
	var name []byte
	err := f.read(func(db *pebble.DB) error {
		v, c, err := db.Get(key(tagTargetByPK, string(pub)))
		if err != nil {
			return err
		}
		name = append(name, v...)
		return c.Close()
	})
	if err == pebble.ErrNotFound {
		return nil, fmt.Errorf("target key: %w", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return f.TargetKey(string(name))
}

// TargetKeys lists every registered target, revoked ones included.
func (f *FSM) TargetKeys() ([]*TargetKey, error) {
	return scanRecords[TargetKey](f, []byte{tagTarget})
}

// Grants lists grants; with subject set, only that subject's direct grants.
func (f *FSM) Grants(subject string) ([]*Grant, error) {
	prefix := []byte{tagGrant}
	if subject != "" {
		prefix = key(tagGrant, subject, "")
	}
	return scanRecords[Grant](f, prefix)
}

// Event returns the archived event at index.
func (f *FSM) Event(index uint64) (*events.Event, error) {
	var ev events.Event
	found, err := f.getRecord(eventKey(index), &ev)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("event %d: %w", index, ErrNotFound)
	}
	return &ev, nil
}

// Events calls fn for archived events with index >= since, in index order,
// until fn returns false or the archive ends. Indexes have gaps where the
// log held rejected commands or Raft configuration changes.
func (f *FSM) Events(since uint64, fn func(*events.Event) bool) error {
	upper := []byte{tagEvent + 1}
	return f.scan(eventKey(since), upper, func(k, v []byte) (bool, error) {
		ev := new(events.Event)
		if err := proto.Unmarshal(v, ev); err != nil {
			return false, fmt.Errorf("decode archived event %d: %w", binary.BigEndian.Uint64(k[1:]), err)
		}
		return fn(ev), nil
	})
}

// RequestIndex returns the index of the event that carried request id, or 0.
func (f *FSM) RequestIndex(id string) (uint64, error) {
	var idx uint64
	err := f.read(func(db *pebble.DB) error {
		var err error
		idx, err = readU64(db, key(tagRequest, id))
		return err
	})
	return idx, err
}
