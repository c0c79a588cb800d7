package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/rpc"
)

// The journal makes each (job, target) run at most once on this host. A job
// is recorded as started before it runs and with its result after; a
// dispatch that arrives again (a reconnect, a new leader) is answered from
// the journal instead of running again, and results are sent until a node
// acknowledges them.
//
// Layout: one bbolt bucket "jobs", key job id, value a JSON journalEntry.
type journal struct {
	db *bolt.DB
}

type journalEntry struct {
	// Status is "started" or "done".
	Status string `json:"status"`
	// Result is the encoded rpc.JobResult once done.
	Result   []byte    `json:"result,omitempty"`
	Reported bool      `json:"reported"`
	Updated  time.Time `json:"updated"`
}

const (
	journalStarted = "started"
	journalDone    = "done"
	// journalKeep is how many finished jobs the journal remembers; a
	// dispatch of an older job than that is not expected (jobs time out
	// long before).
	journalKeep = 1000
)

var bucketJobs = []byte("jobs")

func openJournal(path string) (*journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("journal %s is in use by another agent", path)
		}
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketJobs)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open journal %s: %w", path, err)
	}
	return &journal{db: db}, nil
}

func (j *journal) close() error { return j.db.Close() }

// get returns the entry for a job, or nil.
func (j *journal) get(job string) (*journalEntry, error) {
	var e *journalEntry
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get([]byte(job))
		if v == nil {
			return nil
		}
		e = new(journalEntry)
		return json.Unmarshal(v, e)
	})
	if err != nil {
		return nil, fmt.Errorf("journal entry %s: %w", job, err)
	}
	return e, nil
}

func (j *journal) put(job string, e *journalEntry) error {
	e.Updated = time.Now().UTC()
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return j.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).Put([]byte(job), v)
	})
}

// start records that a job is about to run.
func (j *journal) start(job string) error {
	return j.put(job, &journalEntry{Status: journalStarted})
}

// finish records a job's result, to be reported.
func (j *journal) finish(r *rpc.JobResult) error {
	b, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	if err := j.put(r.GetJobId(), &journalEntry{Status: journalDone, Result: b}); err != nil {
		return err
	}
	return j.prune()
}

// reported records that a node acknowledged a job's result.
func (j *journal) reported(job string) error {
	e, err := j.get(job)
	if err != nil || e == nil || e.Status != journalDone {
		return err
	}
	e.Reported = true
	return j.put(job, e)
}

// result decodes a finished entry's result.
func (e *journalEntry) result() (*rpc.JobResult, error) {
	var r rpc.JobResult
	if err := proto.Unmarshal(e.Result, &r); err != nil {
		return nil, fmt.Errorf("journal result: %w", err)
	}
	return &r, nil
}

// unreported returns finished results no node has acknowledged yet.
func (j *journal) unreported() ([]*rpc.JobResult, error) {
	var out []*rpc.JobResult
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(_, v []byte) error {
			var e journalEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if e.Status != journalDone || e.Reported {
				return nil
			}
			r, err := e.result()
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// prune forgets the oldest reported entries beyond journalKeep.
func (j *journal) prune() error {
	return j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		excess := b.Stats().KeyN - journalKeep
		if excess <= 0 {
			return nil
		}
		type kt struct {
			k []byte
			t time.Time
		}
		var old []kt
		err := b.ForEach(func(k, v []byte) error {
			var e journalEntry
			if json.Unmarshal(v, &e) == nil && e.Reported {
				old = append(old, kt{append([]byte(nil), k...), e.Updated})
			}
			return nil
		})
		if err != nil {
			return err
		}
		sort.Slice(old, func(a, c int) bool { return old[a].t.Before(old[c].t) })
		for i := 0; i < len(old) && i < excess; i++ {
			if err := b.Delete(old[i].k); err != nil {
				return err
			}
		}
		return nil
	})
}
