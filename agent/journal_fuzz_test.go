package agent

import (
	"encoding/json"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

// FuzzJournal reads arbitrary bytes back as a journal entry, as an agent
// does after a crash tore a write or a disk flipped bits. Reading a damaged
// entry fails with an error instead of panicking or reporting a made-up
// result, the other entries stay readable once it is gone, and a result
// recorded with finish is returned unchanged by unreported until it is
// marked reported.
func FuzzJournal(f *testing.F) {
	j, err := openJournal(filepath.Join(f.TempDir(), "journal.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { j.close() })
	// Durability is not what is fuzzed; an fsync per write would cut the
	// executions a second to a few hundred.
	j.db.NoSync = true

	res := &rpc.JobResult{JobId: "job-1", Status: "changed", Error: "x",
		Blocks: []*events.BlockResult{{Kind: "exec", Name: "count", Outcome: "changed"}}}
	enc, _ := proto.Marshal(res)
	done, _ := json.Marshal(journalEntry{Status: journalDone, Result: enc})
	started, _ := json.Marshal(journalEntry{Status: journalStarted})
	f.Add(done, enc)
	f.Add(started, []byte{})
	f.Add([]byte(`{"status":"done","result":"////"}`), []byte{0xff})
	f.Add([]byte(`{"status":"done","result":"AAAA","reported":"yes"}`), []byte{0x0a, 0x80})
	f.Add([]byte(`null`), []byte{})
	f.Add([]byte{}, []byte{0x1a, 0x05})

	f.Fuzz(func(t *testing.T, raw, result []byte) {
		const damaged = "damaged"
		if err := j.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Put([]byte(damaged), raw) }); err != nil {
			t.Fatal(err)
		}
		e, err := j.get(damaged)
		var stored journalEntry
		jerr := json.Unmarshal(raw, &stored)
		switch {
		case (err == nil) != (jerr == nil):
			t.Fatalf("get = %+v, %v; but json says %v", e, err, jerr)
		case err == nil && e == nil && string(raw) != "null":
			t.Fatalf("get of a stored entry returned none")
		}
		if e != nil && e.Status == journalDone {
			if r, rerr := e.result(); rerr == nil && r == nil {
				t.Fatal("result() returned neither a result nor an error")
			}
		}
		list, uerr := j.unreported()
		if uerr == nil {
			for _, r := range list {
				if r == nil {
					t.Fatal("unreported returned a nil result")
				}
			}
		}
		if err := j.reported(damaged); err != nil && jerr == nil {
			t.Fatalf("reported on a readable entry: %v", err)
		}
		if err := j.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Delete([]byte(damaged)) }); err != nil {
			t.Fatal(err)
		}

		// A result the agent itself records comes back unchanged.
		var r rpc.JobResult
		if proto.Unmarshal(result, &r) != nil || r.GetJobId() == "" || r.GetJobId() == damaged {
			return
		}
		if err := j.finish(&r); err != nil {
			t.Fatalf("finish: %v", err)
		}
		list, err = j.unreported()
		if err != nil {
			t.Fatalf("unreported after finish: %v", err)
		}
		found := false
		for _, got := range list {
			found = found || proto.Equal(got, &r)
		}
		if !found {
			t.Fatalf("unreported = %v, want it to hold %v", list, &r)
		}
		if err := j.reported(r.GetJobId()); err != nil {
			t.Fatal(err)
		}
		list, err = j.unreported()
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range list {
			if got.GetJobId() == r.GetJobId() {
				t.Fatalf("%s still unreported after reported", r.GetJobId())
			}
		}
		if err := j.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketJobs).Delete([]byte(r.GetJobId())) }); err != nil {
			t.Fatal(err)
		}
	})
}
