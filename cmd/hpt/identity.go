package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hpt-dev/hpt/events"
	"github.com/hpt-dev/hpt/rpc"
	"github.com/hpt-dev/hpt/rpc/auth"
)

// identityJSON is the stable JSON of users, machines and groups.
type identityJSON struct {
	Kind         string    `json:"kind"`
	Name         string    `json:"name"`
	Email        string    `json:"email,omitempty"`
	Description  string    `json:"description,omitempty"`
	Created      time.Time `json:"created"`
	CreatedIndex uint64    `json:"created_index"`
	Members      []string  `json:"members,omitempty"`
	Groups       []string  `json:"groups"`
}

// identityCommand builds `hpt users|machines|groups`.
func (a *app) identityCommand(kind string) *cobra.Command {
	plural := kind + "s"
	cmd := &cobra.Command{Use: plural, Short: "Manage " + plural}
	var email, desc string
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a " + kind,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// The server applies the same limits; checking here first keeps
			// a bad name or text from being sent at all.
			if err := errors.Join(events.CheckName(kind, args[0]), events.CheckText("--email", email), events.CheckText("--description", desc)); err != nil {
				return usagef("%v", err)
			}
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Identities.Add(cmd.Context(), &rpc.AddIdentityRequest{Kind: kind, Name: args[0], Email: email, Description: desc})
				if err != nil {
					return err
				}
				return a.written(w, fmt.Sprintf("added %s:%s", kind, args[0]))
			})
		},
	}
	if kind == events.KindUser {
		add.Flags().StringVar(&email, "email", "", "contact address")
	} else {
		add.Flags().StringVar(&desc, "description", "", "what it is for")
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List " + plural,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Identities.List(cmd.Context(), &rpc.ListIdentitiesRequest{Kind: kind})
				if err != nil {
					return err
				}
				out := []identityJSON{}
				for _, id := range resp.GetIdentities() {
					out = append(out, identityJSON{
						Kind: id.GetKind(), Name: id.GetName(), Email: id.GetEmail(), Description: id.GetDescription(),
						Created: time.Unix(0, id.GetCreatedUnixNano()).UTC(), CreatedIndex: id.GetCreatedIndex(),
						Members: id.GetMembers(), Groups: nonNil(id.GetGroups()),
					})
				}
				if a.json() {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				switch kind {
				case events.KindGroup:
					fmt.Fprintln(tw, "NAME\tMEMBERS\tIN GROUPS\tCREATED")
					for _, o := range out {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, orDash(strings.Join(o.Members, ",")), orDash(strings.Join(o.Groups, ",")), o.Created.Format(time.RFC3339))
					}
				default:
					fmt.Fprintln(tw, "NAME\tGROUPS\tDETAIL\tCREATED")
					for _, o := range out {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Name, orDash(strings.Join(o.Groups, ",")), orDash(o.Email+o.Description), o.Created.Format(time.RFC3339))
					}
				}
				return tw.Flush()
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a " + kind + " with its memberships, grants and tokens",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Identities.Remove(cmd.Context(), &rpc.RemoveIdentityRequest{Kind: kind, Name: args[0]})
				if err != nil {
					return err
				}
				return a.written(w, fmt.Sprintf("removed %s:%s", kind, args[0]))
			})
		},
	}
	cmd.AddCommand(add, list, remove)
	if kind == events.KindGroup {
		member := func(use, short string, call func(*rpc.Client) func(cmd *cobra.Command, req *rpc.MemberRequest) (*rpc.WriteResponse, error)) *cobra.Command {
			return &cobra.Command{
				Use:   use + " GROUP SUBJECT",
				Short: short,
				Args:  cobra.ExactArgs(2),
				RunE: func(cmd *cobra.Command, args []string) error {
					return a.withClient(func(c *rpc.Client) error {
						w, err := call(c)(cmd, &rpc.MemberRequest{Group: args[0], Member: args[1]})
						if err != nil {
							return err
						}
						return a.written(w, fmt.Sprintf("%s %s %s", use, args[0], args[1]))
					})
				},
			}
		}
		cmd.AddCommand(
			member("add-member", "Add a user, machine or group (user:NAME, ...) to a group", func(c *rpc.Client) func(*cobra.Command, *rpc.MemberRequest) (*rpc.WriteResponse, error) {
				return func(cmd *cobra.Command, r *rpc.MemberRequest) (*rpc.WriteResponse, error) {
					return c.Identities.AddMember(cmd.Context(), r)
				}
			}),
			member("remove-member", "Remove a member from a group", func(c *rpc.Client) func(*cobra.Command, *rpc.MemberRequest) (*rpc.WriteResponse, error) {
				return func(cmd *cobra.Command, r *rpc.MemberRequest) (*rpc.WriteResponse, error) {
					return c.Identities.RemoveMember(cmd.Context(), r)
				}
			}),
		)
	}
	return cmd
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// tokenJSON is the stable JSON of `hpt tokens list`.
type tokenJSON struct {
	ID          string     `json:"id"`
	Subject     string     `json:"subject"`
	Description string     `json:"description,omitempty"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"expires"`
	// Expired is whether Expires has passed, by this machine's clock.
	Expired  bool       `json:"expired"`
	Revoked  bool       `json:"revoked"`
	LastUsed *time.Time `json:"last_used"`
}

// defaultTokenTTL is the lifetime `tokens create` gives a token unless
// --ttl says otherwise: a token that never expires outlives the reason it
// was made, and nobody remembers to revoke it.
const defaultTokenTTL = 30 * 24 * time.Hour

func timePtr(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

func (a *app) tokensCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Manage API tokens (sk_...)"}
	var subject, desc string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --for SUBJECT [--ttl D]",
		Short: "Create a token for a user or machine; the secret is shown once",
		Long: `Creates an API token for SUBJECT and prints its secret once, on stdout.
The token expires after --ttl, 30 days (720h) unless given; --ttl 0 makes
one that never expires, until revoked. tokens list shows expired ones as
such.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if subject == "" {
				return usagef("--for SUBJECT is required (user:NAME or machine:NAME)")
			}
			if _, err := events.ParseSubject(subject); err != nil {
				return usageError{err}
			}
			if ttl < 0 || (ttl > 0 && ttl < time.Second) {
				return usagef("--ttl %s: want 0 (never expires) or at least 1s", ttl)
			}
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Tokens.Create(cmd.Context(), &rpc.CreateTokenRequest{Subject: subject, TtlSeconds: int64(ttl / time.Second), Description: desc})
				if err != nil {
					return err
				}
				if a.json() {
					return a.printJSON(map[string]any{"id": resp.GetId(), "token": resp.GetToken(), "subject": subject, "expires": timePtr(resp.GetExpiresUnixNano()), "index": resp.GetIndex()})
				}
				fmt.Fprintln(a.stdout, resp.GetToken())
				exp := "never expires"
				if t := timePtr(resp.GetExpiresUnixNano()); t != nil {
					exp = "expires " + t.Format(time.RFC3339)
				}
				fmt.Fprintf(a.stderr, "token %s for %s, %s; the secret above is not shown again\n", resp.GetId(), subject, exp)
				return nil
			})
		},
	}
	create.Flags().StringVar(&subject, "for", "", "subject: user:NAME or machine:NAME")
	create.Flags().DurationVar(&ttl, "ttl", defaultTokenTTL, "lifetime, such as 24h or 2160h; 0: never expires")
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	var listFor string
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (ids only; secrets are never stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Tokens.List(cmd.Context(), &rpc.ListTokensRequest{Subject: listFor})
				if err != nil {
					return err
				}
				out := []tokenJSON{}
				now := time.Now()
				for _, t := range resp.GetTokens() {
					exp := timePtr(t.GetExpiresUnixNano())
					out = append(out, tokenJSON{ID: t.GetId(), Subject: t.GetSubject(), Description: t.GetDescription(),
						Created: time.Unix(0, t.GetCreatedUnixNano()).UTC(), Expires: exp, Expired: exp != nil && !now.Before(*exp),
						Revoked: t.GetRevoked(), LastUsed: timePtr(t.GetLastUsedUnixNano())})
				}
				if a.json() {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSUBJECT\tEXPIRES\tREVOKED\tLAST USED (this node)\tDESCRIPTION")
				for _, t := range out {
					expires := fmtTime(t.Expires, "never")
					if t.Expired {
						expires = "expired " + expires
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\n", t.ID, t.Subject, expires, t.Revoked, fmtTime(t.LastUsed, "-"), orDash(t.Description))
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listFor, "for", "", "only tokens of this subject")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token on every node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				w, err := c.Tokens.Revoke(cmd.Context(), &rpc.RevokeTokenRequest{Id: args[0]})
				if err != nil {
					return err
				}
				return a.written(w, "revoked token")
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func fmtTime(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Format(time.RFC3339)
}

// grantJSON is the stable JSON of `hpt grants list`.
type grantJSON struct {
	Subject      string `json:"subject"`
	Privilege    string `json:"privilege"`
	Resource     string `json:"resource"`
	CreatedIndex uint64 `json:"created_index"`
	// Expires is null for a grant that never expires; Expired says its
	// expiry passed by the answering node's clock (it allows nothing).
	Expires *time.Time `json:"expires"`
	Expired bool       `json:"expired"`
}

func toGrantJSON(g *rpc.GrantInfo) grantJSON {
	return grantJSON{Subject: g.GetSubject(), Privilege: g.GetPrivilege(), Resource: g.GetResource(), CreatedIndex: g.GetCreatedIndex(),
		Expires: timePtr(g.GetExpiresUnixNano()), Expired: g.GetExpired()}
}

// grantExpiryFlags checks `grants add --ttl D` and `--until TIME` and puts
// them in req. A ttl is sent as it is: the node that accepts the grant
// counts it from its own clock, so this machine's clock does not matter.
// An until is absolute; it is checked against this clock here only to
// refuse a time already past early, and the node checks it again.
func grantExpiryFlags(req *rpc.GrantRequest, flags *pflag.FlagSet, ttl time.Duration, until string, now time.Time) error {
	ttlSet, untilSet := flags.Changed("ttl"), flags.Changed("until")
	if ttlSet && untilSet {
		return usagef("--ttl and --until: give one or the other")
	}
	if ttlSet {
		if ttl <= 0 {
			return usagef("--ttl %s: want a duration greater than 0, such as 4h", ttl)
		}
		req.TtlNanos = int64(ttl)
	}
	if untilSet {
		at, err := time.Parse(time.RFC3339, until)
		if err != nil {
			return usagef("--until %q: want an RFC 3339 time, such as 2026-12-03T10:00:00Z", until)
		}
		if !at.After(now) {
			return usagef("--until %s: is not in the future", until)
		}
		req.UntilUnixNano = at.UnixNano()
	}
	return nil
}

func (a *app) grantsCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "grants", Short: "Manage grants: (subject, privilege, resource)"}
	var ttl time.Duration
	var until string
	change := func(use, short string, call func(*rpc.Client, *cobra.Command, *rpc.GrantRequest) (*rpc.WriteResponse, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " SUBJECT PRIVILEGE RESOURCE",
			Short: short,
			Args:  cobra.ExactArgs(3),
			RunE: func(cmd *cobra.Command, args []string) error {
				req := &rpc.GrantRequest{Subject: args[0], Privilege: args[1], Resource: args[2]}
				what := fmt.Sprintf("%s grant %s %s %s", strings.TrimSuffix(use, "e")+"ed", args[0], args[1], args[2])
				if use == "add" {
					// Refused here too so that the answer is a usage
					// error before any connection; the node checks the
					// same (events.CheckPayload).
					if err := events.CheckNewGrantResource(args[2]); err != nil {
						return usagef("RESOURCE: %w", err)
					}
					if err := events.CheckPrivilege(args[1]); err != nil {
						return usagef("PRIVILEGE: %w", err)
					}
					if err := events.CheckGrantScope(args[1], args[2]); err != nil {
						return usagef("%w", err)
					}
					if err := grantExpiryFlags(req, cmd.Flags(), ttl, until, time.Now()); err != nil {
						return err
					}
					switch {
					case ttl > 0:
						what += " for " + ttl.String()
					case until != "":
						what += " until " + until
					}
				}
				return a.withClient(func(c *rpc.Client) error {
					w, err := call(c, cmd, req)
					if err != nil {
						return err
					}
					return a.written(w, what)
				})
			},
		}
	}
	var listFor string
	list := &cobra.Command{
		Use:   "list",
		Short: "List grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Grants.List(cmd.Context(), &rpc.ListGrantsRequest{Subject: listFor})
				if err != nil {
					return err
				}
				out := []grantJSON{}
				for _, g := range resp.GetGrants() {
					out = append(out, toGrantJSON(g))
				}
				if a.json() {
					return a.printJSON(out)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SUBJECT\tPRIVILEGE\tRESOURCE\tEXPIRES\tINDEX")
				for _, g := range out {
					expires := fmtTime(g.Expires, "never")
					if g.Expired {
						expires = "expired " + expires
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", g.Subject, g.Privilege, g.Resource, expires, g.CreatedIndex)
				}
				return tw.Flush()
			})
		},
	}
	list.Flags().StringVar(&listFor, "for", "", "only grants held directly by this subject")
	add := change("add", "Grant a privilege on a resource, for good or for a time (--ttl, --until)", func(c *rpc.Client, cmd *cobra.Command, r *rpc.GrantRequest) (*rpc.WriteResponse, error) {
		return c.Grants.Add(cmd.Context(), r)
	})
	add.Long = `Grants SUBJECT the PRIVILEGE on RESOURCE. With --ttl or --until the grant
expires: from then on it allows nothing on any node, and the leader removes
it (an event with reason "expired"), ending the credentials it allowed.
--ttl is counted from the clock of the node that accepts the grant. Adding
a grant that exists with another expiry (or none) sets its expiry, which is
how access is extended.`
	add.Flags().DurationVar(&ttl, "ttl", 0, "the grant expires after this long, such as 4h (counted by the node)")
	add.Flags().StringVar(&until, "until", "", "the grant expires at this RFC 3339 time, such as 2026-12-03T10:00:00Z")
	cmd.AddCommand(
		add,
		list,
		change("remove", "Remove a grant", func(c *rpc.Client, cmd *cobra.Command, r *rpc.GrantRequest) (*rpc.WriteResponse, error) {
			return c.Grants.Remove(cmd.Context(), r)
		}),
	)
	return cmd
}

func (a *app) authCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Ask the access engine"}
	check := &cobra.Command{
		Use:   "check SUBJECT PRIVILEGE RESOURCE",
		Short: "Would SUBJECT be allowed PRIVILEGE on RESOURCE, and by which grant?",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Grants.Check(cmd.Context(), &rpc.GrantRequest{Subject: args[0], Privilege: args[1], Resource: args[2]})
				if err != nil {
					return err
				}
				if a.json() {
					out := map[string]any{"allowed": resp.GetAllowed(), "reason": resp.GetReason(), "via": resp.GetVia()}
					if g := resp.GetGrant(); g != nil {
						out["grant"] = toGrantJSON(g)
					}
					if err := a.printJSON(out); err != nil {
						return err
					}
				} else if resp.GetAllowed() {
					via := ""
					if resp.GetVia() != "" {
						via = " (through " + resp.GetVia() + ")"
					}
					fmt.Fprintf(a.stdout, "allowed: %s%s\n", resp.GetReason(), via)
				} else {
					fmt.Fprintf(a.stdout, "denied: %s\n", resp.GetReason())
				}
				if !resp.GetAllowed() {
					return exitError{code: exitFailure}
				}
				return nil
			})
		},
	}
	cmd.AddCommand(check)
	return cmd
}

type whoamiJSON struct {
	Subject    string      `json:"subject"`
	TokenID    string      `json:"token_id"`
	Expires    *time.Time  `json:"expires"`
	Node       string      `json:"node"`
	ClusterKey string      `json:"cluster_key"`
	Groups     []string    `json:"groups"`
	Grants     []grantJSON `json:"grants"`
}

func (a *app) whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Who the token is, its expiry, and the grants it holds (needs no grant)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(func(c *rpc.Client) error {
				resp, err := c.Cluster.Whoami(cmd.Context(), &rpc.WhoamiRequest{})
				if err != nil {
					return err
				}
				out := whoamiJSON{Subject: resp.GetSubject(), TokenID: resp.GetTokenId(), Expires: timePtr(resp.GetExpiresUnixNano()),
					Node: resp.GetNode(), ClusterKey: resp.GetClusterKey(), Groups: nonNil(resp.GetGroups()), Grants: []grantJSON{}}
				for _, g := range resp.GetGrants() {
					out.Grants = append(out.Grants, toGrantJSON(g))
				}
				if a.json() {
					return a.printJSON(out)
				}
				expires := "never expires"
				if out.Expires != nil {
					expires = "expires " + out.Expires.Format(time.RFC3339)
				}
				fmt.Fprintf(a.stdout, "%s (token %s, %s), answered by %s of cluster %s\n",
					out.Subject, auth.Token{ID: out.TokenID}, expires, out.Node, out.ClusterKey)
				if len(out.Groups) > 0 {
					fmt.Fprintf(a.stdout, "groups: %s\n", strings.Join(out.Groups, ", "))
				}
				if len(out.Grants) == 0 {
					fmt.Fprintln(a.stdout, "grants: none")
				}
				for _, g := range out.Grants {
					via := ""
					if g.Subject != out.Subject {
						via = " (through " + g.Subject + ")"
					}
					switch {
					case g.Expired:
						via += " (expired at " + g.Expires.Format(time.RFC3339) + ": allows nothing)"
					case g.Expires != nil:
						via += " (until " + g.Expires.Format(time.RFC3339) + ")"
					}
					fmt.Fprintf(a.stdout, "grant: %s %s%s\n", g.Privilege, g.Resource, via)
				}
				return nil
			})
		},
	}
}
