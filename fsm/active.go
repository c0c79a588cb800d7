package fsm

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// activeJobs is the set of jobs the scheduler still has work for, kept in
// memory beside the state: the scheduler looks after every applied event,
// and reading every job ever submitted each time would make a long-lived
// cluster's leader slower with every job it has finished. The state keeps
// the same set as keys of their own (A<job id>, written in the batch that
// submits or finishes the job), so opening a state or restoring a snapshot
// reads the running jobs only, not every job ever submitted.
type activeJobs struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

// jobChange is a job entering (submitted) or leaving (finished) the set.
type jobChange struct {
	id     string
	active bool
}

func (a *activeJobs) reset(ids map[string]struct{}) {
	a.mu.Lock()
	a.ids = ids
	a.mu.Unlock()
}

func (a *activeJobs) apply(changes []jobChange) {
	if len(changes) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range changes {
		if c.active {
			a.ids[c.id] = struct{}{}
		} else {
			delete(a.ids, c.id)
		}
	}
}

func (a *activeJobs) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]string, 0, len(a.ids))
	for id := range a.ids {
		out = append(out, id)
	}
	return out
}

// activeJobsIn reads which jobs of a state are active, from their keys. A
// state written before those keys existed (no keyActiveJobsIndexed) gets
// them once, from a scan of every job, flushed before it is trusted.
func activeJobsIn(db *pebble.DB) (map[string]struct{}, error) {
	indexed, err := readU64(db, keyActiveJobsIndexed)
	if err != nil {
		return nil, fmt.Errorf("running jobs: %w", err)
	}
	if indexed == 0 {
		if err := indexActiveJobs(db); err != nil {
			return nil, fmt.Errorf("index running jobs: %w", err)
		}
	}
	ids := map[string]struct{}{}
	err = scanDB(db, []byte{tagActiveJob}, []byte{tagActiveJob + 1}, func(k, _ []byte) (bool, error) {
		ids[string(k[1:])] = struct{}{}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("running jobs: %w", err)
	}
	return ids, nil
}

// indexActiveJobs writes the key of every active job and marks the state
// indexed: the one-time migration of a state from before the keys.
func indexActiveJobs(db *pebble.DB) error {
	jobs, err := recordsIn[Job](db, []byte{tagJob})
	if err != nil {
		return err
	}
	b := db.NewBatch()
	defer b.Close()
	for _, j := range jobs {
		if j.GetStatus().Active() {
			if err := b.Set(key(tagActiveJob, j.GetId()), nil, nil); err != nil {
				return err
			}
		}
	}
	if err := b.Set(keyActiveJobsIndexed, u64(1), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return err
	}
	return db.Flush()
}

// ActiveJobs lists the jobs that are running or being cancelled, oldest
// first.
func (f *FSM) ActiveJobs() ([]*Job, error) {
	var jobs []*Job
	for _, id := range f.active.list() {
		j, err := f.Job(id)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, j)
	}
	sortJobs(jobs)
	return jobs, nil
}
