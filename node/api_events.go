package node

import (
	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ---- Events ----

func (a *eventsAPI) List(req *rpc.ListEventsRequest, stream grpc.ServerStreamingServer[events.Event]) error {
	if req.GetActor() != "" {
		if _, err := events.ParseActor(req.GetActor()); err != nil {
			return status.Errorf(codes.InvalidArgument, "actor: %v", err)
		}
	}
	types := map[events.Type]bool{}
	for _, t := range req.GetTypes() {
		types[t] = true
	}
	match := func(ev *events.Event) bool {
		return (len(types) == 0 || types[ev.GetType()]) && (req.GetActor() == "" || ev.GetActor() == req.GetActor())
	}
	ctx := stream.Context()
	next := req.GetSince()
	sent := uint32(0)
	const page = 256
	for {
		// Read a page without holding the state during network sends.
		changed := a.n.fsm.Changed()
		var batch []*events.Event
		var scanned int
		err := a.n.fsm.Events(next, func(ev *events.Event) bool {
			scanned++
			next = ev.GetIndex() + 1
			if match(ev) {
				batch = append(batch, ev)
			}
			return scanned < page
		})
		if err != nil {
			return stateErr(err)
		}
		for _, ev := range batch {
			if err := stream.Send(ev); err != nil {
				return err
			}
			sent++
			if req.GetLimit() > 0 && sent >= req.GetLimit() {
				return nil
			}
		}
		if scanned == page {
			continue
		}
		if !req.GetFollow() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.n.ctx.Done():
			return ErrShutdown
		case <-changed:
		}
	}
}
