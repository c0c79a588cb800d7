package node

import (
	"context"
	"errors"

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
	// End the follow when the node shuts down as when the caller goes.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(a.n.ctx, cancel)()
	sent := uint32(0)
	_, err := followEvents(ctx, a.n.fsm, req.GetSince(), req.GetFollow(), match, func(ev *events.Event) error {
		if err := stream.Send(ev); err != nil {
			return err
		}
		sent++
		if req.GetLimit() > 0 && sent >= req.GetLimit() {
			return errStopFollow
		}
		return nil
	})
	var readErr *archiveError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &readErr):
		return stateErr(readErr.err)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		if a.n.ctx.Err() != nil {
			return ErrShutdown
		}
		return nil
	}
	return err
}
