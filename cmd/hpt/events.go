package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

func (a *app) eventsCommand() *cobra.Command {
	var (
		since  uint64
		types  []string
		actor  string
		follow bool
		limit  uint32
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "The audit log: every committed event with index, time and actor",
		Long: "Lists committed events in index order. Types: " + strings.Join(events.Names(), ", ") + `.
With --follow, waits for new events until interrupted; -o json then prints
one object per line.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if actor != "" {
				if _, err := events.ParseActor(actor); err != nil {
					return usagef("--actor: %w", err)
				}
			}
			req := &rpc.ListEventsRequest{Since: since, Actor: actor, Follow: follow, Limit: limit}
			for _, t := range types {
				for _, one := range splitList(t) {
					typ, err := events.ParseType(one)
					if err != nil {
						return usageError{err}
					}
					req.Types = append(req.Types, typ)
				}
			}
			return a.withClient(func(c *rpc.Client) error {
				stream, err := c.Events.List(cmd.Context(), req)
				if err != nil {
					return err
				}
				var tw *tabwriter.Writer
				if !a.json() {
					tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "INDEX\tTIME\tACTOR\tTYPE\tPAYLOAD")
				}
				var all []events.JSON
				for {
					ev, err := stream.Recv()
					if err == io.EOF || (err != nil && cmd.Context().Err() != nil) || status.Code(err) == codes.Canceled {
						break
					}
					if err != nil {
						return err
					}
					j, err := events.ToJSON(ev)
					if err != nil {
						return fmt.Errorf("event %d: %w", ev.GetIndex(), err)
					}
					switch {
					case a.json() && follow:
						b, _ := json.Marshal(j)
						fmt.Fprintf(a.stdout, "%s\n", b)
					case a.json():
						all = append(all, j)
					default:
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", j.Index, j.Time.Format("2006-01-02T15:04:05.000Z07:00"), j.Actor, j.Type, truncate(string(j.Payload), 100))
						if follow {
							tw.Flush()
						}
					}
				}
				if a.json() && !follow {
					if all == nil {
						all = []events.JSON{}
					}
					return a.printJSON(all)
				}
				if tw != nil {
					return tw.Flush()
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&since, "since", 0, "start at this index")
	f.StringArrayVar(&types, "type", nil, "only these event types (repeat or comma-separate)")
	f.StringVar(&actor, "actor", "", "only events by this actor: user:NAME, machine:NAME, group:NAME, node:NAME or target:NAME (user:alice@example.com)")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	f.Uint32Var(&limit, "limit", 0, "stop after this many events (0: no limit)")
	return cmd
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
