// Package events defines hpt's replicated event log entries: the versioned
// Envelope (Event), the catalogue of event types and their payloads
// (events.proto), and their binary and JSON encodings.
//
// Decode is the gate for bytes read from the Raft log, snapshots and the
// wire: it refuses anything it cannot fully understand, so a node never
// applies an entry it misreads.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

//go:generate ../rpc/gen/protoc.sh events.proto

// Version is the envelope version this binary writes and the newest it can
// apply.
const Version = 1

// MaxEncodedSize bounds one encoded event. Larger proposals are refused
// before they reach Raft (provisioning configs with their files are the
// largest legitimate events).
const MaxEncodedSize = 4 << 20

// Errors callers branch on.
var (
	ErrUnknownType = errors.New("unknown event type")
	ErrTooNew      = errors.New("event version newer than this binary")
	ErrMalformed   = errors.New("malformed event")
)

// NewPayload returns an empty payload message for t, or nil if t has none.
func NewPayload(t Type) proto.Message {
	switch t {
	case Type_TYPE_CLUSTER_BOOTSTRAPPED:
		return new(ClusterBootstrapped)
	case Type_TYPE_USER_ADDED:
		return new(UserAdded)
	case Type_TYPE_USER_REMOVED:
		return new(UserRemoved)
	case Type_TYPE_MACHINE_ADDED:
		return new(MachineAdded)
	case Type_TYPE_MACHINE_REMOVED:
		return new(MachineRemoved)
	case Type_TYPE_GROUP_ADDED:
		return new(GroupAdded)
	case Type_TYPE_GROUP_REMOVED:
		return new(GroupRemoved)
	case Type_TYPE_GROUP_MEMBER_ADDED:
		return new(GroupMemberAdded)
	case Type_TYPE_GROUP_MEMBER_REMOVED:
		return new(GroupMemberRemoved)
	case Type_TYPE_TOKEN_CREATED:
		return new(TokenCreated)
	case Type_TYPE_TOKEN_REVOKED:
		return new(TokenRevoked)
	case Type_TYPE_TARGET_KEY_REGISTERED:
		return new(TargetKeyRegistered)
	case Type_TYPE_TARGET_KEY_REVOKED:
		return new(TargetKeyRevoked)
	case Type_TYPE_GRANT_ADDED:
		return new(GrantAdded)
	case Type_TYPE_GRANT_REMOVED:
		return new(GrantRemoved)
	case Type_TYPE_JOB_SUBMITTED:
		return new(JobSubmitted)
	case Type_TYPE_JOB_BATCH_STARTED:
		return new(JobBatchStarted)
	case Type_TYPE_JOB_TARGET_DISPATCHED:
		return new(JobTargetDispatched)
	case Type_TYPE_JOB_TARGET_FINISHED:
		return new(JobTargetFinished)
	case Type_TYPE_JOB_FINISHED:
		return new(JobFinished)
	case Type_TYPE_JOB_CANCELLED:
		return new(JobCancelled)
	case Type_TYPE_TARGET_CONNECTED:
		return new(TargetConnected)
	case Type_TYPE_TARGET_DISCONNECTED:
		return new(TargetDisconnected)
	case Type_TYPE_NODE_JOINED:
		return new(NodeJoined)
	case Type_TYPE_NODE_REMOVED:
		return new(NodeRemoved)
	case Type_TYPE_BENCH_WRITE:
		return new(BenchWrite)
	case Type_TYPE_LEADER_ELECTED:
		return new(LeaderElected)
	case Type_TYPE_SNAPSHOT_RESTORED:
		return new(SnapshotRestored)
	case Type_TYPE_DESTINATION_ADDED:
		return new(DestinationAdded)
	case Type_TYPE_DESTINATION_REMOVED:
		return new(DestinationRemoved)
	case Type_TYPE_CREDENTIAL_ISSUED:
		return new(CredentialIssued)
	case Type_TYPE_CREDENTIAL_REVOKED:
		return new(CredentialRevoked)
	}
	return nil
}

// TypeOf returns the event type whose payload is m.
func TypeOf(m proto.Message) (Type, error) {
	name := m.ProtoReflect().Descriptor().FullName()
	if t, ok := typeByPayload()[name]; ok {
		return t, nil
	}
	return Type_TYPE_UNKNOWN, fmt.Errorf("%w: no event type has payload %s", ErrUnknownType, name)
}

// typeByPayload maps each payload message to its type: a table derived once
// from NewPayload, which stays the one list of types. Lazily, because the
// message descriptors are registered by the generated code's init.
var typeByPayload = sync.OnceValue(func() map[protoreflect.FullName]Type {
	m := make(map[protoreflect.FullName]Type, len(Type_name))
	for v := range Type_name {
		if p := NewPayload(Type(v)); p != nil {
			m[p.ProtoReflect().Descriptor().FullName()] = Type(v)
		}
	}
	return m
})

// Name returns the short, stable, snake_case name of t ("user_added"), used
// by the CLI, JSON output and NATS subjects.
func Name(t Type) string {
	s, ok := Type_name[int32(t)]
	if !ok {
		return fmt.Sprintf("type_%d", int32(t))
	}
	return strings.ToLower(strings.TrimPrefix(s, "TYPE_"))
}

// ParseType accepts "user_added", "USER_ADDED" or "TYPE_USER_ADDED".
func ParseType(s string) (Type, error) {
	up := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(up, "TYPE_") {
		up = "TYPE_" + up
	}
	v, ok := Type_value[up]
	if !ok || v == 0 {
		return 0, fmt.Errorf("%w %q (see `hpt events --help` for the list)", ErrUnknownType, s)
	}
	return Type(v), nil
}

// Names lists every known type name in catalogue order.
func Names() []string {
	out := make([]string, 0, len(Type_name))
	for i := 1; i < len(Type_name); i++ {
		out = append(out, Name(Type(i)))
	}
	return out
}

// New builds an envelope for payload, to be proposed by actor at time at.
func New(actor, requestID string, at time.Time, payload proto.Message) (*Event, error) {
	t, err := TypeOf(payload)
	if err != nil {
		return nil, err
	}
	switch payload.(type) {
	case *JobTargetFinished, *JobFinished:
		payload = proto.Clone(payload)
		writeLegacyStatus(payload)
	}
	data, err := proto.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", Name(t), err)
	}
	return &Event{
		Version:      Version,
		TimeUnixNano: at.UnixNano(),
		Actor:        actor,
		Type:         t,
		RequestId:    requestID,
		Payload:      data,
	}, nil
}

// Encode returns the binary form of e.
func Encode(e *Event) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	if len(b) > MaxEncodedSize {
		return nil, fmt.Errorf("%w: event of %d bytes exceeds the %d byte limit", ErrMalformed, len(b), MaxEncodedSize)
	}
	return b, nil
}

// Decode parses and fully validates an encoded event, including its
// payload. It never panics on any input.
func Decode(b []byte) (*Event, error) {
	e, _, err := decode(b)
	return e, err
}

// decode is Decode that also returns the payload it decoded.
func decode(b []byte) (*Event, proto.Message, error) {
	if len(b) > MaxEncodedSize {
		return nil, nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformed, len(b), MaxEncodedSize)
	}
	var e Event
	if err := proto.Unmarshal(b, &e); err != nil {
		return nil, nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	p, err := e.DecodePayload()
	if err != nil {
		return nil, nil, err
	}
	return &e, p, nil
}

// DecodePayload checks the envelope's version and type and returns its
// payload message.
func (e *Event) DecodePayload() (proto.Message, error) {
	if e.GetVersion() == 0 {
		return nil, fmt.Errorf("%w: envelope version missing", ErrMalformed)
	}
	if e.GetVersion() > Version {
		return nil, fmt.Errorf("%w: version %d, this binary applies up to %d", ErrTooNew, e.GetVersion(), Version)
	}
	m := NewPayload(e.GetType())
	if m == nil {
		return nil, fmt.Errorf("%w %d", ErrUnknownType, int32(e.GetType()))
	}
	if err := proto.Unmarshal(e.GetPayload(), m); err != nil {
		return nil, fmt.Errorf("%w: %s payload: %v", ErrMalformed, Name(e.GetType()), err)
	}
	if err := readLegacyStatus(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Time returns the proposer's timestamp.
func (e *Event) Time() time.Time { return time.Unix(0, e.GetTimeUnixNano()).UTC() }

// JSON is the stable machine-readable form of an event (SPEC section 10).
type JSON struct {
	Index     uint64    `json:"index"`
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	Type      string    `json:"type"`
	RequestID string    `json:"request_id"`
	// TokenID is the public id of the token that authorized the write,
	// absent for what a node writes on its own.
	TokenID string          `json:"token_id,omitempty"`
	Payload json.RawMessage `json:"payload"`
}

var payloadJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// ToJSON converts e to its JSON form. Secrets are never in payloads; the
// hashes of token secrets are left out too, as audit consumers have no use
// for them.
func ToJSON(e *Event) (JSON, error) {
	out := JSON{
		Index:     e.GetIndex(),
		Time:      e.Time(),
		Actor:     e.GetActor(),
		Type:      Name(e.GetType()),
		RequestID: e.GetRequestId(),
		TokenID:   e.GetTokenId(),
		Payload:   json.RawMessage("{}"),
	}
	m, err := e.DecodePayload()
	if err != nil {
		return out, err
	}
	redact(m)
	jsonStatus(m)
	b, err := payloadJSON.Marshal(m)
	if err != nil {
		return out, fmt.Errorf("render %s payload: %w", out.Type, err)
	}
	// protojson output is deliberately unstable in whitespace; compact it so
	// the JSON form is byte-stable for consumers that hash it.
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return out, fmt.Errorf("render %s payload: %w", out.Type, err)
	}
	out.Payload = json.RawMessage(buf.Bytes())
	return out, nil
}

// redact clears credential material from a decoded payload before it is
// rendered for people or exported.
func redact(m proto.Message) {
	switch p := m.(type) {
	case *TokenCreated:
		p.SecretSha256 = nil
	case *ClusterBootstrapped:
		p.TokenSecretSha256 = nil
	}
}
