package fsm

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// activeJobs is the set of jobs the scheduler still has work for, kept in
// memory beside the state: the scheduler looks after every applied event,
// and reading every job ever submitted each time would make a long-lived
// cluster's leader slower with every job it has finished. It is derived
// from the state alone (rebuilt on open and restore, moved after each
// committed batch), so it needs no key of its own and no migration.
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

// activeJobsIn reads which jobs of a state are active.
func activeJobsIn(db *pebble.DB) (map[string]struct{}, error) {
	jobs, err := recordsIn[Job](db, []byte{tagJob})
	if err != nil {
		return nil, err
	}
	ids := map[string]struct{}{}
	for _, j := range jobs {
		if JobActive(j.GetStatus()) {
			ids[j.GetId()] = struct{}{}
		}
	}
	return ids, nil
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
