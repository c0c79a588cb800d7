package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

func (a *app) eventsCommand() *cobra.Command {
	var (
		since  string
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
one object per line.

Indexes grow in thousands, with gaps: one Raft entry can carry many events
(a batch of writes), so event i of entry e has index e*1000+i; entries with
no event (duplicates, refused writes, Raft's own) take none. --since takes
an index (52017), a time (2026-05-01T12:00:00Z, or 2026-05-01 for
midnight UTC) or a duration back from now (90m, 24h), and starts at the
first event at or after it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if actor != "" {
				if _, err := events.ParseActor(actor); err != nil {
					return usagef("--actor: %w", err)
				}
			}
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			req := &rpc.ListEventsRequest{Actor: actor, Follow: follow, Limit: limit}
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
				if req.Since, err = from.index(cmd.Context(), c); err != nil {
					return err
				}
				stream, err := c.Events.List(cmd.Context(), req)
				if err != nil {
					return err
				}
				var tw *tabwriter.Writer
				switch {
				case a.json():
				case follow:
					// Rows are printed as they come, so columns have
					// fixed widths instead of a tabwriter's, which
					// align only what they hold.
					fmt.Fprintf(a.stdout, followRow, "INDEX", "TIME", "ACTOR", "TYPE", "PAYLOAD")
				default:
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
						if err := a.printJSONLine(j); err != nil {
							return err
						}
					case a.json():
						all = append(all, j)
					case follow:
						fmt.Fprintf(a.stdout, followRow, strconv.FormatUint(j.Index, 10), j.Time.Format(eventTime), j.Actor, j.Type, truncate(string(j.Payload), 100))
					default:
						fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", j.Index, j.Time.Format(eventTime), j.Actor, j.Type, truncate(string(j.Payload), 100))
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
	f.StringVar(&since, "since", "", "start at this index, time (RFC 3339 or a date) or duration ago (24h)")
	f.StringArrayVar(&types, "type", nil, "only these event types (repeat or comma-separate)")
	f.StringVar(&actor, "actor", "", "only events by this actor: user:NAME, machine:NAME, group:NAME, node:NAME or target:NAME (user:alice@example.com)")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new events")
	f.Uint32Var(&limit, "limit", 0, "stop after this many events (0: no limit)")
	return cmd
}

// eventTime is how events' times are shown: fixed width in UTC.
const eventTime = "2006-01-02T15:04:05.000Z07:00"

// followRow is one row of `events --follow`'s table; a column wider than
// its width pushes the rest of its row only.
const followRow = "%-10s  %-24s  %-24s  %-22s  %s\n"

// since is where --since starts: an index, or a time to find the index of.
type since struct {
	idx  uint64
	time time.Time // zero: idx
}

// parseSince reads --since: an index, an RFC 3339 time, a date (midnight
// UTC), or a duration back from now.
func parseSince(s string, now time.Time) (since, error) {
	if s == "" {
		return since{}, nil
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return since{idx: n}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return since{time: t}, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return since{time: now.Add(-d)}, nil
	}
	return since{}, usagef("--since %q: want an index (52017), a time (2026-05-01T12:00:00Z or 2026-05-01) or a duration ago (24h)", s)
}

// index is the index to start at: for a time, the first event's at or
// after it. Events' times come from the leader's clock in index order, so
// a search over indexes finds it: a few one-event reads, not the whole
// log.
func (s since) index(ctx context.Context, c *rpc.Client) (uint64, error) {
	if s.time.IsZero() {
		return s.idx, nil
	}
	// at is the first event at or after index i; ok is false past the end.
	at := func(i uint64) (idx uint64, before, ok bool, err error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.Events.List(ctx, &rpc.ListEventsRequest{Since: i, Limit: 1})
		if err != nil {
			return 0, false, false, err
		}
		ev, err := stream.Recv()
		if err == io.EOF {
			return 0, false, false, nil
		}
		if err != nil {
			return 0, false, false, err
		}
		return ev.GetIndex(), time.Unix(0, ev.GetTimeUnixNano()).Before(s.time), true, nil
	}
	// lo always has an event at or after it that is before the time; hi
	// none, or one at or after the time.
	idx, before, ok, err := at(0)
	if err != nil || !ok || !before {
		return 0, err
	}
	lo, step := idx, uint64(1000)
	hi := lo + step
	for {
		idx, before, ok, err := at(hi)
		if err != nil {
			return 0, err
		}
		if !ok || !before {
			break
		}
		lo, step = idx, step*2
		if step > math.MaxUint64/4 || lo > math.MaxUint64-step {
			return 0, fmt.Errorf("--since: event %d is still before %s", lo, s.time.Format(time.RFC3339))
		}
		hi = lo + step
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		idx, before, ok, err := at(mid)
		if err != nil {
			return 0, err
		}
		if ok && before && idx < hi {
			lo = idx
		} else {
			hi = mid
		}
	}
	return hi, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
