package fsm

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/hpt-dev/hpt/events"
)

func destKey(name string) []byte { return key(tagDest, name) }

// addDestination records a destination. Its connector must be a target
// registered and not revoked when the event applies: target keys are state,
// so every replica decides alike.
func (t *txn) addDestination(p *events.DestinationAdded) *Rejection {
	if err := events.CheckDestination(p); err != nil {
		return t.reject(ErrInvalid, "%v", err)
	}
	p = events.NormalizeDestination(p)
	name := p.GetName()
	if t.has(destKey(name)) {
		return t.reject(ErrExists, "destination %q already exists", name)
	}
	if c := p.GetConnector(); c != "" {
		var tk TargetKey
		if !t.get(key(tagTarget, c), &tk) {
			return t.reject(ErrNotFound, "destination %q: connector %q is not a registered target (register it with hpt keys register, or hpt gen-target-keys)", name, c)
		}
		if tk.GetRevoked() {
			return t.reject(ErrConflict, "destination %q: connector %q is a revoked target", name, c)
		}
	}
	t.put(destKey(name), &Destination{
		Name: name, Kind: p.GetKind(), Addr: p.GetAddr(), Connector: p.GetConnector(), Mesh: p.GetMesh(),
		Labels: p.GetLabels(), Database: p.GetDatabase(), Created: t.origin(),
	})
	if c := p.GetConnector(); c != "" {
		t.set(key(tagDestOf, c, name), nil)
	}
	return nil
}

// removeDestination forgets a destination. Grants on it are left alone: they
// are globs over names, and one naming it exactly applies again to a
// destination added later under the same name, as target grants do.
func (t *txn) removeDestination(name string) *Rejection {
	var d Destination
	if !t.get(destKey(name), &d) {
		return t.reject(ErrNotFound, "destination %q does not exist", name)
	}
	t.del(destKey(name))
	if c := d.GetConnector(); c != "" {
		t.del(key(tagDestOf, c, name))
	}
	return nil
}

// Destination returns the destination named name.
func (f *FSM) Destination(name string) (*Destination, error) {
	var d Destination
	found, err := f.getRecord(destKey(name), &d)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("destination %q: %w", name, ErrNotFound)
	}
	return &d, nil
}

// Destinations lists every destination in name order.
func (f *FSM) Destinations() ([]*Destination, error) {
	return scanRecords[Destination](f, []byte{tagDest})
}

// DestinationsOfConnector lists, in name order, the destinations whose
// connector is target: what that target's agent manages. One read, so a
// Restore cannot come between the index and the records.
func (f *FSM) DestinationsOfConnector(target string) ([]*Destination, error) {
	var out []*Destination
	err := f.read(func(db *pebble.DB) error {
		prefix := key(tagDestOf, target, "")
		var names []string
		if err := scanDB(db, prefix, prefixEnd(prefix), func(k, _ []byte) (bool, error) {
			names = append(names, string(k[len(prefix):]))
			return true, nil
		}); err != nil {
			return err
		}
		for _, n := range names {
			var d Destination
			found, err := getProto(db, destKey(n), &d)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("destination %q of connector %q: index without record", n, target)
			}
			out = append(out, &d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("destinations of connector %q: %w", target, err)
	}
	return out, nil
}
