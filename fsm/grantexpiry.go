package fsm

import (
	"encoding/binary"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// tagGrantExpiry orders grants that expire by when, so that the leader
// finds the expired ones without reading every grant:
//
//	E <expiry BE> <subject> 0x00 <priv> 0x00 <res> -> the grant's a key
const tagGrantExpiry = 'E'

func grantExpiryKey(exp int64, subject, priv, res string) []byte {
	var be [8]byte
	binary.BigEndian.PutUint64(be[:], uint64(exp))
	return key(tagGrantExpiry, string(be[:])+subject, priv, res)
}

func fmtNano(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// ExpiredGrants returns up to limit grants whose expiry is at or before
// now, soonest first: those the leader removes.
func (f *FSM) ExpiredGrants(now time.Time, limit int) ([]*Grant, error) {
	var be [8]byte
	binary.BigEndian.PutUint64(be[:], uint64(now.UnixNano()+1))
	lower, upper := []byte{tagGrantExpiry}, append([]byte{tagGrantExpiry}, be[:]...)
	var out []*Grant
	err := f.read(func(db *pebble.DB) error {
		return scanDB(db, lower, upper, func(_, v []byte) (bool, error) {
			if len(out) >= limit {
				return false, nil
			}
			var g Grant
			ok, err := getProto(db, v, &g)
			if err != nil {
				return false, err
			}
			if ok {
				out = append(out, &g)
			}
			return true, nil
		})
	})
	return out, err
}
