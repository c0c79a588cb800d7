package events

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// The names are what scripts read (SPEC section 10) and what events of
// earlier builds carry: they never change. A value added to an enum must
// be added here with its name.
var (
	wantJobNames    = []string{"running", "cancelling", "done", "failed", "stopped", "cancelled"}
	wantTargetNames = []string{"pending", "dispatched", "running", "ok", "changed", "failed", "unreachable", "refused", "cancelled", "skipped"}
)

func TestStatusNamesRoundTrip(t *testing.T) {
	var jobs []string
	for v := int32(1); v < int32(len(JobStatus_name)); v++ {
		s := JobStatus(v)
		got, err := ParseJobStatus(s.Name())
		if err != nil || got != s {
			t.Fatalf("ParseJobStatus(%q) = %v, %v; want %v", s.Name(), got, err, s)
		}
		jobs = append(jobs, s.Name())
	}
	if !slices.Equal(jobs, wantJobNames) {
		t.Fatalf("job status names %q, want %q", jobs, wantJobNames)
	}
	var targets []string
	for v := int32(1); v < int32(len(TargetStatus_name)); v++ {
		s := TargetStatus(v)
		got, err := ParseTargetStatus(s.Name())
		if err != nil || got != s {
			t.Fatalf("ParseTargetStatus(%q) = %v, %v; want %v", s.Name(), got, err, s)
		}
		targets = append(targets, s.Name())
	}
	if !slices.Equal(targets, wantTargetNames) {
		t.Fatalf("target status names %q, want %q", targets, wantTargetNames)
	}
	for _, bad := range []string{"", "unknown", "UNKNOWN", "Done", "JOB_STATUS_DONE", "ok "} {
		if s, err := ParseJobStatus(bad); err == nil {
			t.Errorf("ParseJobStatus(%q) = %v, want an error", bad, s)
		}
		if s, err := ParseTargetStatus(bad); err == nil {
			t.Errorf("ParseTargetStatus(%q) = %v, want an error", bad, s)
		}
	}
	if got := TargetStatus(99).Name(); got != "target_status_99" {
		t.Errorf("name of an unknown value: %q", got)
	}
}

// encodeEvent encodes payload as it is, as a build before the enums
// wrote it (events.New would add the names).
func encodeEvent(t *testing.T, payload proto.Message) []byte {
	t.Helper()
	typ, err := TypeOf(payload)
	if err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(&Event{Version: Version, Index: 7, TimeUnixNano: 1, Actor: "node:n1", Type: typ, Payload: data})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An event of a build before the enums carries the status by name alone:
// it decodes to the enum, and renders as JSON exactly as an event of this
// build does, and as it rendered before.
func TestOldStatusEventsDecodeToTheEnum(t *testing.T) {
	for _, tc := range []struct {
		old, now proto.Message
		json     string
		status   func(proto.Message) string
	}{
		{
			old:    &JobTargetFinished{JobId: "j1", Target: "web-1", Status: "changed"},
			now:    &JobTargetFinished{JobId: "j1", Target: "web-1", TargetStatus: TargetStatus_TARGET_STATUS_CHANGED.Enum()},
			json:   `{"job_id":"j1","target":"web-1","status":"changed","blocks":[],"error":""}`,
			status: func(m proto.Message) string { return m.(*JobTargetFinished).GetTargetStatus().String() },
		},
		{
			old:    &JobFinished{JobId: "j1", Status: "stopped"},
			now:    &JobFinished{JobId: "j1", JobStatus: JobStatus_JOB_STATUS_STOPPED.Enum()},
			json:   `{"job_id":"j1","status":"stopped"}`,
			status: func(m proto.Message) string { return m.(*JobFinished).GetJobStatus().String() },
		},
	} {
		old, err := Decode(encodeEvent(t, tc.old))
		if err != nil {
			t.Fatal(err)
		}
		oldP, err := old.DecodePayload()
		if err != nil {
			t.Fatal(err)
		}
		ev, err := New("node:n1", "", time.Unix(0, 1), tc.now)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		now, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		nowP, err := now.DecodePayload()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := tc.status(oldP), tc.status(tc.now); got != want {
			t.Errorf("%T of an old build decodes to %s, want %s", tc.old, got, want)
		}
		if !proto.Equal(oldP, nowP) {
			t.Errorf("%T: old %v and new %v decode differently", tc.old, oldP, nowP)
		}
		// What a build before the enums reads of this build's event: the
		// name, under its old field.
		legacy := proto.Clone(tc.old)
		proto.Reset(legacy)
		if err := proto.Unmarshal(ev.GetPayload(), legacy); err != nil {
			t.Fatal(err)
		}
		if got, want := legacyName(legacy), legacyName(tc.old); got != want {
			t.Errorf("%T written by this build carries the name %q, want %q", tc.old, got, want)
		}
		for _, e := range []*Event{old, now} {
			j, err := ToJSON(e)
			if err != nil {
				t.Fatal(err)
			}
			if string(j.Payload) != tc.json {
				t.Errorf("%T JSON payload\n%s\nwant\n%s", tc.old, j.Payload, tc.json)
			}
		}
	}
}

func legacyName(m proto.Message) string {
	switch p := m.(type) {
	case *JobTargetFinished:
		return p.GetStatus()
	case *JobFinished:
		return p.GetStatus()
	}
	return ""
}

// No build writes an enum and a name that disagree; Decode refuses one. A
// name of no status, and an enum value newer than this binary, decode (the
// state machine refuses them as it refuses any status that is no outcome).
func TestStatusEnumAndNameMustAgree(t *testing.T) {
	bad := encodeEvent(t, &JobTargetFinished{JobId: "j1", Target: "a", Status: "ok", TargetStatus: TargetStatus_TARGET_STATUS_FAILED.Enum()})
	if _, err := Decode(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("disagreeing status decoded: %v", err)
	}
	bad = encodeEvent(t, &JobFinished{JobId: "j1", Status: "done", JobStatus: JobStatus_JOB_STATUS_FAILED.Enum()})
	if _, err := Decode(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("disagreeing job status decoded: %v", err)
	}
	for _, p := range []proto.Message{
		&JobTargetFinished{JobId: "j1", Target: "a", Status: "bogus"},
		&JobTargetFinished{JobId: "j1", Target: "a", Status: "later", TargetStatus: TargetStatus(99).Enum()},
		&JobFinished{JobId: "j1"},
	} {
		e, err := Decode(encodeEvent(t, p))
		if err != nil {
			t.Fatalf("%v: %v", p, err)
		}
		m, _ := e.DecodePayload()
		if f, ok := m.(*JobTargetFinished); ok && f.GetTargetStatus().Final() {
			t.Fatalf("%v decoded to the outcome %s", p, f.GetTargetStatus())
		}
	}
}

func TestStatusClasses(t *testing.T) {
	var final, failure, inFlight []string
	for v := int32(0); v < int32(len(TargetStatus_name)); v++ {
		s := TargetStatus(v)
		if s.Final() {
			final = append(final, s.Name())
		}
		if s.Failure() {
			failure = append(failure, s.Name())
		}
		if s.InFlight() {
			inFlight = append(inFlight, s.Name())
		}
	}
	if want := []string{"ok", "changed", "failed", "unreachable", "refused", "cancelled", "skipped"}; !slices.Equal(final, want) {
		t.Errorf("final = %q, want %q", final, want)
	}
	if want := []string{"failed", "unreachable", "refused"}; !slices.Equal(failure, want) {
		t.Errorf("failure = %q, want %q", failure, want)
	}
	if want := []string{"dispatched", "running"}; !slices.Equal(inFlight, want) {
		t.Errorf("in flight = %q, want %q", inFlight, want)
	}
	var active, outcome []string
	for v := int32(0); v < int32(len(JobStatus_name)); v++ {
		s := JobStatus(v)
		if s.Active() {
			active = append(active, s.Name())
		}
		if s.Outcome() {
			outcome = append(outcome, s.Name())
		}
	}
	if want := []string{"running", "cancelling"}; !slices.Equal(active, want) {
		t.Errorf("active = %q, want %q", active, want)
	}
	if want := []string{"done", "failed", "stopped", "cancelled"}; !slices.Equal(outcome, want) {
		t.Errorf("outcome = %q, want %q", outcome, want)
	}
}
