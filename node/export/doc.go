// Package export copies committed events into a NATS JetStream stream,
// each exactly once and in index order, across leader changes and NATS
// outages. The node runs an Exporter on the Raft leader only.
//
// # Messages
//
// One message per archived event (rejected commands and Raft configuration
// entries leave gaps in the indexes; they are not events):
//
//   - subject "<prefix>.<type>", e.g. "hpt.events.user_added" (events.Name);
//   - header Nats-Msg-Id: the event index in decimal;
//   - headers Hpt-Type (the type name), Hpt-Actor ("user:alice@example.com"),
//     Hpt-Time (the proposer's timestamp, RFC 3339 with nanoseconds, UTC) and
//     Content-Type, so consumers can filter without decoding;
//   - body: the events.JSON object ({"index", "time", "actor", "type",
//     "request_id", "payload"}, as `hpt events -o json` prints it), or with
//     Format "protobuf" the events.Event envelope (events.Encode). Token
//     secret hashes are left out of both, as events.ToJSON does.
//
// The stream (default HPT_EVENTS, subjects "<prefix>.>") is created with
// file storage and the configured duplicate window if it does not exist; an
// existing stream is used as it is.
//
// # Why exactly once
//
// The exporter keeps no state that outlives a connection. The stream is its
// own record of progress:
//
//  1. Resume from the stream. On every (re)connection the exporter reads the
//     stream's last message (stream info LastSeq, then that message) and
//     takes its Nats-Msg-Id as the last exported index; it continues with
//     the archived events after it (all of them if the stream is empty).
//     Every replica archives the same events under the same indexes, so it
//     does not matter which node was leader before.
//  2. Each message names its predecessor. Events are published in index
//     order, pipelined (a bounded window of unacknowledged publishes), and
//     every message carries Nats-Expected-Last-Msg-Id = the index of the
//     event before it (the first message into an empty stream carries
//     Nats-Expected-Last-Sequence instead). JetStream stores a message only
//     if the stream's last message is its predecessor, so the stream is
//     always the archive's events in order with no gap: if a message is lost
//     (a disconnect, a timeout), every message after it is refused too.
//  3. Any failure (an error ack, a missed ack, a disconnect) abandons the
//     window and goes back to 1.
//  4. An overlap is harmless. Messages published before a failure may still
//     land after the stream's end was read, and a deposed leader may not yet
//     have noticed; the same event is then published again with the same
//     Nats-Msg-Id. Within the duplicate window JetStream acknowledges it as
//     a duplicate without storing it; after it, the predecessor check of 2
//     refuses it.
//
// # Limits
//
//   - The stream must hold only hpt's events. A message without an event
//     index in Nats-Msg-Id at the end of the stream stops the export
//     (Status.LastError says so). Deleting single messages at the end of
//     the stream is not supported either: JetStream keeps checking new
//     messages against the deleted one's id until it restarts.
//   - The stream's content is the progress. If it is purged, or retention
//     limits (MaxAge, MaxMsgs, MaxBytes) empty it, the exporter starts again
//     from the first archived event and consumers see the history again.
//     Limits that drop only old messages are fine.
//   - JetStream may lose acknowledged messages if the server crashes before
//     it syncs them (by default every 2 minutes; Jepsen found this). The
//     exporter then publishes them again, once; a consumer that read the
//     lost copies sees those events twice and should deduplicate by
//     Nats-Msg-Id. Run NATS with sync_interval: always to avoid it.
//   - An event larger than the server's max_payload (default 1 MiB; hpt
//     events may reach 4 MiB, more in JSON) stops the export at that event
//     until max_payload is raised.
//   - The stream is a copy for consumers, never the source of truth: while
//     NATS is unreachable the export falls behind (Status.Lag) and writes go
//     on; it catches up when NATS is back.
package export
