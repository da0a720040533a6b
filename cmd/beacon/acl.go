package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/beaconhq/beacon/acl"
	"github.com/beaconhq/beacon/acl/bearer"
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() {
	extraCommands = append(extraCommands, newACLCmd)
}

// tokenEnv is where the CLI's token lives; --token wins over it.
const tokenEnv = bearer.EnvToken

// bindToken adds --token to fs. main.go binds it on the root command and
// exports it (exportToken) before any command runs, so every command,
// the recipes' and the benchmarks' included, sends it.
func bindToken(fs *pflag.FlagSet) {
	fs.String("token", "", "ACL token secret sent with every call (env "+tokenEnv+")")
}

// exportToken puts a --token given into BEACON_TOKEN, where the client
// reads it.
func exportToken(cmd *cobra.Command) error {
	if fl := cmd.Flags().Lookup("token"); fl != nil && fl.Changed {
		return os.Setenv(tokenEnv, fl.Value.String())
	}
	return nil
}

// bindBenchACL adds --acl to `beacon bench`: lock then compares an agent
// with ACLs on to one without, as --tls does for TLS.
func bindBenchACL(cmd *cobra.Command) *cobra.Command {
	cmd.PersistentFlags().BoolVar(&bench.CompareACL, "acl", false,
		"lock: also run the workload against an agent with ACLs on (a scoped token, etcd's auth), and print both and the ratio")
	return cmd
}

func newACLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl bootstrap|token",
		Short: "Manage the ACL tokens of the agent API",
		Long: `With ACLs on (acl: true, or beacon agent --acl) every API call needs a
token whose rules allow it (default deny). A rule is KIND:PATTERN:ACCESS:
KIND is service, node, lock, election, queue, config or operator; PATTERN
is a name, or a prefix ending in '*'; ACCESS is read or write (write
includes read). operator covers the cluster (operator:cluster:…), the
tokens (operator:acl:…) and snapshots. The most specific rule for a name
decides: an exact name beats a prefix, a longer prefix a shorter one.

  beacon acl bootstrap                          once per cluster, on the agent's host
  beacon acl token create --rule lock:batch-*:write [--description D]
  beacon acl token list
  beacon acl token revoke ACCESSOR_ID

The CLI sends a token with --token or BEACON_TOKEN. The agent's unix
socket (--agent unix:<data-dir>/beacon.sock) needs none: it is the host's
operator.`,
	}
	tokenCmd := &cobra.Command{
		Use:   "token create|list|revoke",
		Short: "Create, list and revoke tokens (needs operator:acl)",
	}
	tokenCmd.AddCommand(newACLCreateCmd(g), newACLListCmd(g), newACLRevokeCmd(g))
	cmd.AddCommand(newACLBootstrapCmd(g), tokenCmd)
	return cmd
}

// withACL runs fn with the agent's ACL service; client.New sends the
// token (--token, exported to BEACON_TOKEN).
func withACL(cmd *cobra.Command, g *globals, addr string, fn func(ctx context.Context, c beaconpb.ACLClient) error) error {
	c, err := client.New(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), g.callTimeout)
	defer cancel()
	return fn(ctx, beaconpb.NewACLClient(c.Conn()))
}

func newACLBootstrapCmd(g *globals) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "bootstrap [--data-dir DIR]",
		Short: "Make the management token, once per cluster, and print its secret",
		Long: `Make the management token (write on everything) and print it: its secret
is shown this once. Bootstrap works once per cluster; it goes through the
agent's owner-only unix socket (in --data-dir, unless --agent or
BEACON_AGENT names another address; over TCP it needs a client
certificate of the cluster's CA).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			addr := g.agent
			if addr == "" && os.Getenv("BEACON_AGENT") == "" {
				addr = "unix:" + filepath.Join(dataDir, "beacon.sock")
			}
			return withACL(cmd, g, addr, func(ctx context.Context, c beaconpb.ACLClient) error {
				resp, err := c.Bootstrap(ctx, &beaconpb.ACLBootstrapRequest{})
				if err != nil {
					return err
				}
				return printSecret(p, resp)
			})
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "beacon-data", "the agent's data dir, where its unix socket is")
	return cmd
}

func newACLCreateCmd(g *globals) *cobra.Command {
	var rules []string
	var description string
	cmd := &cobra.Command{
		Use:     "create --rule KIND:PATTERN:ACCESS... [--description D]",
		Short:   "Make a token with rules and print its secret (shown this once)",
		Example: "  beacon acl token create --rule lock:batch-*:write --rule service:*:read --description 'batch jobs'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			if _, err := acl.ParseRules(rules); err != nil {
				return &usageError{fmt.Errorf("--rule: %w", err)}
			}
			return withACL(cmd, g, g.agent, func(ctx context.Context, c beaconpb.ACLClient) error {
				resp, err := c.TokenCreate(ctx, &beaconpb.ACLTokenCreateRequest{Rules: rules, Description: description})
				if err != nil {
					return err
				}
				return printSecret(p, resp)
			})
		},
	}
	cmd.Flags().StringArrayVar(&rules, "rule", nil, "a rule KIND:PATTERN:ACCESS (repeat for more)")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for")
	return cmd
}

func newACLListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tokens (accessor ids and rules; never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return withACL(cmd, g, g.agent, func(ctx context.Context, c beaconpb.ACLClient) error {
				resp, err := c.TokenList(ctx, &beaconpb.ACLTokenListRequest{})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(resp)
				}
				var rows [][]string
				for _, t := range resp.Tokens {
					rows = append(rows, []string{t.AccessorId, t.Created, strings.Join(t.Rules, ","), t.Description})
				}
				return p.Table([]string{"ACCESSOR ID", "CREATED", "RULES", "DESCRIPTION"}, rows)
			})
		},
	}
}

func newACLRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ACCESSOR_ID",
		Short: "Delete a token: every agent refuses it once its watch saw the delete",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{errors.New("give one accessor id (beacon acl token list shows them)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return withACL(cmd, g, g.agent, func(ctx context.Context, c beaconpb.ACLClient) error {
				if _, err := c.TokenRevoke(ctx, &beaconpb.ACLTokenRevokeRequest{AccessorId: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
				return nil
			})
		},
	}
}

// printSecret prints a token just made, with its secret.
func printSecret(p *printer, t *beaconpb.ACLTokenSecret) error {
	if p.IsJSON() {
		return p.JSON(t)
	}
	desc := t.Token.GetDescription()
	return p.Table([]string{"ACCESSOR ID", "SECRET", "RULES", "DESCRIPTION"},
		[][]string{{t.Token.GetAccessorId(), t.Secret, strings.Join(t.Token.GetRules(), ","), desc}})
}
