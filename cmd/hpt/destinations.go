package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
)

// destinationJSON is the stable JSON of `hpt destinations list` (SPEC
// section 10). Status is the connector's as `hpt targets list` shows it
// (connected | disconnected | revoked), empty without a connector.
type destinationJSON struct {
	Name      string            `json:"name"`
	Kind      string            `json:"kind"`
	Addr      string            `json:"addr"`
	Connector string            `json:"connector"`
	Mesh      bool              `json:"mesh"`
	Labels    map[string]string `json:"labels"`
	Status    string            `json:"status"`
}

func (a *app) destinationsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "destinations", Short: "Endpoints users reach with short-lived credentials (ssh, postgres, kubernetes, tcp)"}
	var spec rpc.AddDestinationRequest
	var labels string
	add := &cobra.Command{
		Use:   "add NAME --kind K --addr HOST:PORT [--connector TARGET] [--mesh] [--labels k=v,...] [--database DB]",
		Short: "Record a destination",
		Long: `Records a destination: a named endpoint that roles are granted on
(hpt grants add user:alice login:deploy destinations/web-*).

--kind is ssh, postgres, kubernetes or tcp. --addr is HOST:PORT, as the
connector dials it when the destination is mesh; kubernetes may leave it
out. --connector names the registered target whose agent manages the
destination. tcp and kubernetes destinations are always mesh (reached
through the control plane), so they need a connector. --database is the
default database of a postgres destination.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec.Name = args[0]
			lbl, err := parseLabels("--labels", labels)
			if err != nil {
				return err
			}
			spec.Labels = lbl
			// The node checks the same, and whether the connector is a
			// registered target; checking here first sends nothing bad.
			d := &events.DestinationAdded{Name: spec.Name, Kind: spec.Kind, Addr: spec.Addr, Connector: spec.Connector, Mesh: spec.Mesh, Labels: spec.Labels, Database: spec.Database}
			if err := events.CheckDestination(d); err != nil {
				return usagef("%v", err)
			}
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Destinations.Add(cmd.Context(), &spec)
				if err != nil {
					return err
				}
				mesh := ""
				if events.NormalizeDestination(d).GetMesh() {
					mesh = ", mesh"
				}
				return a.written(w, fmt.Sprintf("added destination %s (%s%s)", spec.Name, spec.Kind, mesh))
			})
		},
	}
	f := add.Flags()
	f.StringVar(&spec.Kind, "kind", "", "ssh, postgres, kubernetes or tcp")
	f.StringVar(&spec.Addr, "addr", "", "HOST:PORT (as the connector dials it, for mesh destinations)")
	f.StringVar(&spec.Connector, "connector", "", "the registered target whose agent manages the destination")
	f.BoolVar(&spec.Mesh, "mesh", false, "route access through the control plane (always on for tcp and kubernetes)")
	f.StringVar(&labels, "labels", "", "labels k=v,...")
	f.StringVar(&spec.Database, "database", "", "postgres: the database credentials connect to by default")

	list := &cobra.Command{
		Use:   "list",
		Short: "List destinations with their connector's status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Destinations.List(cmd.Context(), &rpc.ListDestinationsRequest{})
				if err != nil {
					return err
				}
				out := []destinationJSON{}
				for _, d := range resp.GetDestinations() {
					l := d.GetLabels()
					if l == nil {
						l = map[string]string{}
					}
					out = append(out, destinationJSON{Name: d.GetName(), Kind: d.GetKind(), Addr: d.GetAddr(), Connector: d.GetConnector(),
						Mesh: d.GetMesh(), Labels: l, Status: d.GetStatus()})
				}
				if a.json() {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tKIND\tADDR\tCONNECTOR\tMESH\tLABELS\tSTATUS\tDATABASE")
				for i, d := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\n", d.Name, d.Kind, orDash(d.Addr), orDash(d.Connector), d.Mesh,
						orDash(events.FormatLabels(d.Labels)), orDash(d.Status), orDash(resp.GetDestinations()[i].GetDatabase()))
				}
				return tw.Flush()
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a destination (grants on it stay, as globs over names)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := events.CheckDestinationName(args[0]); err != nil {
				return usagef("NAME: %v", err)
			}
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Destinations.Remove(cmd.Context(), &rpc.RemoveDestinationRequest{Name: args[0]})
				if err != nil {
					return err
				}
				return a.written(w, "removed destination "+args[0])
			})
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}
