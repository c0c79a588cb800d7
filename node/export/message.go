package export

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/hpt-dev/hpt/events"
)

// Headers of every exported message besides Nats-Msg-Id (the event index),
// for consumers that filter without decoding the body.
const (
	HeaderType  = "Hpt-Type"  // events.Name of the type: "user_added"
	HeaderActor = "Hpt-Actor" // the event's actor: "user:alice@example.com"
	HeaderTime  = "Hpt-Time"  // the proposer's timestamp, RFC 3339 with nanoseconds, UTC
	// HeaderContentType is "application/json" or "application/x-protobuf".
	HeaderContentType = "Content-Type"
)

// encoder turns archived events into NATS messages.
type encoder struct {
	stream, prefix, format string
}

// subject returns the subject an event of type t is published to.
func (c encoder) subject(t events.Type) string {
	return c.prefix + "." + events.Name(t)
}

// message builds the message for ev. The JetStream control headers that tie
// it to its predecessor are added by the publisher.
func (c encoder) message(ev *events.Event) (*nats.Msg, error) {
	var (
		body  []byte
		ctype string
		err   error
	)
	switch c.format {
	case FormatProtobuf:
		body, err = encodeProtobuf(ev)
		ctype = "application/x-protobuf"
	default:
		body, err = encodeJSON(ev)
		ctype = "application/json"
	}
	if err != nil {
		return nil, fmt.Errorf("event %d: %w", ev.GetIndex(), err)
	}
	m := nats.NewMsg(c.subject(ev.GetType()))
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, strconv.FormatUint(ev.GetIndex(), 10))
	m.Header.Set(jetstream.ExpectedStreamHeader, c.stream)
	m.Header.Set(HeaderType, events.Name(ev.GetType()))
	m.Header.Set(HeaderActor, headerValue(ev.GetActor()))
	m.Header.Set(HeaderTime, ev.Time().Format(time.RFC3339Nano))
	m.Header.Set(HeaderContentType, ctype)
	return m, nil
}

func encodeJSON(ev *events.Event) ([]byte, error) {
	j, err := events.ToJSON(ev)
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// encodeProtobuf returns the envelope as events.Encode writes it, with the
// same credential material cleared from the payload that events.ToJSON
// leaves out: audit consumers have no use for token hashes.
func encodeProtobuf(ev *events.Event) ([]byte, error) {
	switch ev.GetType() {
	case events.Type_TYPE_TOKEN_CREATED, events.Type_TYPE_CLUSTER_BOOTSTRAPPED:
		m, err := ev.DecodePayload()
		if err != nil {
			return nil, err
		}
		switch p := m.(type) {
		case *events.TokenCreated:
			p.SecretSha256 = nil
		case *events.ClusterBootstrapped:
			p.TokenSecretSha256 = nil
		}
		payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("encode %s payload: %w", events.Name(ev.GetType()), err)
		}
		ev = proto.CloneOf(ev)
		ev.Payload = payload
	}
	return events.Encode(ev)
}

// headerValue keeps a value on one header line.
func headerValue(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
