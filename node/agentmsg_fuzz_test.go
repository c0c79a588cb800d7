package node

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

// FuzzAgentEvent decodes arbitrary bytes as a message on an agent's stream
// (what a registered but compromised target can send) and turns it into
// the event the node would write. Whatever the message claims, the event
// names the stream's own target and a status an agent may report, its request id is the
// one a resend repeats, it survives encoding into the log and back, and a
// message kind the stream does not carry is refused as InvalidArgument.
func FuzzAgentEvent(f *testing.F) {
	for _, m := range []*rpc.AgentMessage{
		{Msg: &rpc.AgentMessage_Ack{Ack: &rpc.JobAck{JobId: "j1"}}},
		{Msg: &rpc.AgentMessage_Result{Result: &rpc.JobResult{JobId: "j1", Status: "changed",
			Blocks: []*events.BlockResult{{Kind: "exec", Name: "count", Outcome: "changed"}}}}},
		{Msg: &rpc.AgentMessage_Result{Result: &rpc.JobResult{JobId: "j1", Status: "ok!", Error: "boom"}}},
		{Msg: &rpc.AgentMessage_Result{Result: &rpc.JobResult{JobId: "j1", TargetStatus: events.TargetStatus_TARGET_STATUS_OK, Status: "ok"}}},
		{Msg: &rpc.AgentMessage_Result{Result: &rpc.JobResult{JobId: "j1", TargetStatus: events.TargetStatus_TARGET_STATUS_PENDING}}},
		{Msg: &rpc.AgentMessage_Hello{Hello: &rpc.AgentHello{Labels: map[string]string{"role": "web"}}}},
		{Msg: &rpc.AgentMessage_Heartbeat{Heartbeat: &rpc.Heartbeat{UnixNano: 1}}},
		{Msg: &rpc.AgentMessage_HostKeys{HostKeys: &rpc.HostKeys{PublicKeys: [][]byte{[]byte("ssh-ed25519 AAAA")}}}},
		{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	const node, target = "n1", "web-1"
	f.Fuzz(func(t *testing.T, b []byte) {
		var m rpc.AgentMessage
		if proto.Unmarshal(b, &m) != nil {
			return // gRPC refuses the stream message before the node sees it
		}
		ev, reqID, err := agentEvent(node, target, &m)
		switch m.GetMsg().(type) {
		case *rpc.AgentMessage_Ack, *rpc.AgentMessage_Result:
			if err != nil || ev == nil {
				t.Fatalf("%v: event %v, %v", &m, ev, err)
			}
		case *rpc.AgentMessage_Heartbeat, *rpc.AgentMessage_Progress, *rpc.AgentMessage_HostKeys:
			if err != nil || ev != nil {
				t.Fatalf("%v writes %v, %v; want nothing", &m, ev, err)
			}
			return
		default:
			if status.Code(err) != codes.InvalidArgument || ev != nil {
				t.Fatalf("%v: event %v, %v; want InvalidArgument", &m, ev, err)
			}
			return
		}
		var job string
		switch e := ev.(type) {
		case *events.JobTargetDispatched:
			if e.GetTarget() != target || e.GetNode() != node || !strings.HasPrefix(reqID, "ack/") {
				t.Fatalf("ack event %v, request id %q", e, reqID)
			}
			job = e.GetJobId()
		case *events.JobTargetFinished:
			if e.GetTarget() != target || !strings.HasPrefix(reqID, "result/") {
				t.Fatalf("result event %v, request id %q", e, reqID)
			}
			if s := e.GetTargetStatus(); s != events.TargetStatus_TARGET_STATUS_OK && s != events.TargetStatus_TARGET_STATUS_CHANGED && s != events.TargetStatus_TARGET_STATUS_FAILED {
				t.Fatalf("result status %s passed through", s.Name())
			}
			job = e.GetJobId()
		default:
			t.Fatalf("event %T", ev)
		}
		if reqID != reqID[:strings.Index(reqID, "/")+1]+job+"/"+target {
			t.Fatalf("request id %q does not derive from job %q and target %q", reqID, job, target)
		}
		again, againID, _ := agentEvent(node, target, &m)
		if againID != reqID || !proto.Equal(again, ev) {
			t.Fatal("the same message, sent again, writes a different event")
		}

		e, err := events.New(events.KindTarget+":"+target, reqID, time.Unix(0, 1), ev)
		if err != nil {
			t.Fatalf("events.New: %v", err)
		}
		enc, err := events.Encode(e)
		if err != nil {
			return // too big for the log: refused, nothing written
		}
		dec, err := events.Decode(enc)
		if err != nil || !proto.Equal(dec, e) {
			t.Fatalf("decode(encode(event)) = %v, %v; want %v", dec, err, e)
		}
		got, err := dec.DecodePayload()
		if err != nil {
			t.Fatalf("decode payload: %v", err)
		}
		if f, ok := got.(*events.JobTargetFinished); ok {
			// events.New adds the status's name, for nodes of builds
			// before the enum; the rest is the event as built.
			if f.GetStatus() != f.GetTargetStatus().Name() { //nolint:staticcheck // the name older builds read
				t.Fatalf("result event carries the name %q for status %s", f.GetStatus(), f.GetTargetStatus().Name()) //nolint:staticcheck // as above
			}
			f.Status = "" //nolint:staticcheck // as above
		}
		if !proto.Equal(got, ev) {
			t.Fatalf("payload round trip = %v; want %v", got, ev)
		}
	})
}
