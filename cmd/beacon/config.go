package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"unicode/utf8"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/bench"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/config"
	"github.com/beaconhq/beacon/internal/cliout"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func init() {
	extraCommands = append(extraCommands, newConfigCmd)
	benchCommands = append(benchCommands, newBenchConfigCmd)
}

func newBenchConfigCmd() *cobra.Command {
	o := bench.ConfigOptions{}
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Put-to-watcher latency of config changes through the agent, beside a raw clientv3 put/watch",
		Long: `Put-to-watcher latency of config changes through the agent (Config.Put, then
the Config.Watch stream delivers it), beside the plain way on the same member:
a clientv3 Put seen by a clientv3 Watch. Without --agent it starts its own
agent.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Samples < 10 {
				return &usageError{errorf("--samples must be at least 10")}
			}
			o.Agent, _ = cmd.Flags().GetString("agent")
			if o.Agent != "" && o.Endpoint == "" {
				return &usageError{errorf("with --agent, give --endpoint (the agent's etcd client URL) too")}
			}
			return bench.Config(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.Endpoint, "endpoint", "", "the agent's etcd client URL, for the plain way")
	cmd.Flags().IntVar(&o.Samples, "samples", 1000, "changes timed per side")
	return cmd
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Configuration keys: get, put, del, list, watch, and render files from templates",
	}
	cmd.AddCommand(newConfigGetCmd(g), newConfigPutCmd(g), newConfigDelCmd(g), newConfigListCmd(g),
		newConfigWatchCmd(g), newConfigRenderCmd(g))
	return cmd
}

// entryJSON is how -w json prints a key: the value as text (base64 and
// value_encoding when it is not UTF-8); revision is the key's mod
// revision, the one --if-revision compares with.
func entryJSON(e *beaconpb.ConfigEntry, keysOnly bool) cliout.Object {
	j := cliout.Object{}.With("key", e.Key)
	if !keysOnly {
		j = j.WithBytes("value", e.Value)
	}
	return j.With("revision", e.ModRevision).With("create_revision", e.CreateRevision).With("version", e.Version)
}

func newConfigGetCmd(g *globals) *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key's value (-w json: key, value, revision)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Config().Get(ctx, &beaconpb.ConfigGetRequest{Key: args[0]})
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(entryJSON(resp.Entry, false))
				}
				v := resp.Entry.Value
				if !raw && (len(v) == 0 || v[len(v)-1] != '\n') {
					v = append(v, '\n')
				}
				_, err = p.W.Write(v)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "print the value's bytes exactly, without adding a newline")
	return cmd
}

func newConfigPutCmd(g *globals) *cobra.Command {
	var ifRev int64
	var empty bool
	cmd := &cobra.Command{
		Use:   "put KEY [VALUE] [--empty]",
		Short: "Write a key (the value from stdin if not given); --if-revision R writes only if the key is at R (0: absent)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			req := &beaconpb.ConfigPutRequest{Key: args[0]}
			size := int64(0)
			if len(args) == 2 {
				req.Value = []byte(args[1])
				size = int64(len(req.Value))
			} else if req.Value, size, err = cliout.ReadInput(cmd.InOrStdin(), config.MaxValueLen); err != nil {
				return errorf("reading the value from stdin: %v", err)
			}
			// The agent checks the size too, with the same function; here
			// the refusal can name the whole size of what was piped in.
			if err := config.ValidateValueSize("value", size); err != nil {
				return status.Error(codes.InvalidArgument, err.Error())
			}
			if size == 0 && !empty {
				return &usageError{errorf("config put %s: the value is empty (no VALUE, and nothing on stdin); to write an empty value, give --empty", args[0])}
			}
			if size > 0 && empty {
				return &usageError{errorf("config put %s: --empty with a value of %d bytes", args[0], size)}
			}
			if cmd.Flags().Changed("if-revision") {
				req.IfRevision = &ifRev
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Config().Put(ctx, req)
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(cliout.Object{}.With("key", req.Key).With("revision", resp.Revision))
				}
				_, err = fmt.Fprintf(p.W, "put %s at revision %d\n", req.Key, resp.Revision)
				return err
			})
		},
	}
	cmd.Flags().Int64Var(&ifRev, "if-revision", 0, "write only if the key's revision is this (0: only if it does not exist)")
	cmd.Flags().BoolVar(&empty, "empty", false, "write an empty value (refused without it, so that an empty stdin is not taken for one)")
	return cmd
}

func newConfigDelCmd(g *globals) *cobra.Command {
	var ifRev int64
	cmd := &cobra.Command{
		Use:     "del KEY",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete a key; --if-revision R deletes only if the key is at R",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			req := &beaconpb.ConfigDeleteRequest{Key: args[0]}
			if cmd.Flags().Changed("if-revision") {
				req.IfRevision = &ifRev
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Config().Delete(ctx, req)
				if err != nil {
					return err
				}
				if p.IsJSON() {
					return p.JSON(cliout.Object{}.With("key", req.Key).With("deleted", resp.Deleted).With("revision", resp.Revision))
				}
				if !resp.Deleted {
					_, err = fmt.Fprintf(p.W, "%s did not exist\n", req.Key)
					return err
				}
				_, err = fmt.Fprintf(p.W, "deleted %s at revision %d\n", req.Key, resp.Revision)
				return err
			})
		},
	}
	cmd.Flags().Int64Var(&ifRev, "if-revision", 0, "delete only if the key's revision is this")
	return cmd
}

func newConfigListCmd(g *globals) *cobra.Command {
	var keysOnly bool
	var limit int64
	cmd := &cobra.Command{
		Use:   "list [PREFIX]",
		Short: "List the keys under a prefix (all keys without one)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			if limit < 0 {
				return &usageError{errorf("--limit must not be negative")}
			}
			req := &beaconpb.ConfigListRequest{KeysOnly: keysOnly, Limit: limit}
			if len(args) == 1 {
				req.Prefix = args[0]
			}
			return withAgent(cmd, g, func(ctx context.Context, c *client.Client) error {
				// A listing may be larger than gRPC's default 4 MiB.
				resp, err := c.Config().List(ctx, req, grpc.MaxCallRecvMsgSize(1<<30))
				if err != nil {
					return err
				}
				if p.IsJSON() {
					entries := []cliout.Object{}
					for _, e := range resp.Entries {
						entries = append(entries, entryJSON(e, keysOnly))
					}
					return p.JSON(cliout.Object{}.With("revision", resp.Revision).With("entries", entries).With("more", resp.More))
				}
				var rows [][]string
				for _, e := range resp.Entries {
					row := []string{e.Key, strconv.FormatInt(e.ModRevision, 10), strconv.FormatInt(e.Version, 10)}
					if !keysOnly {
						row = append(row, short(e.Value, 60))
					}
					rows = append(rows, row)
				}
				header := []string{"KEY", "REVISION", "VERSION"}
				if !keysOnly {
					header = append(header, "VALUE")
				}
				if err := p.Table(header, rows); err != nil {
					return err
				}
				if resp.More {
					fmt.Fprintf(p.W, "(more keys than --limit %d)\n", limit)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&keysOnly, "keys-only", false, "leave the values out")
	cmd.Flags().Int64Var(&limit, "limit", 0, "at most this many keys (0: all)")
	return cmd
}

// short shows a value on one line: quoted if it holds anything but
// printable text, cut after n bytes.
func short(v []byte, n int) string {
	s := string(v)
	cut := len(s) > n
	if cut {
		s = s[:n]
	}
	if !plain(s) {
		s = strconv.Quote(s)
	}
	if cut {
		s += "…"
	}
	return s
}

// plain: non-empty printable text without spaces at the ends or line
// breaks, safe to print bare on a line.
func plain(s string) bool {
	if s == "" || !utf8.ValidString(s) || s[0] == ' ' || s[len(s)-1] == ' ' || s[0] == '"' {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func newConfigWatchCmd(g *globals) *cobra.Command {
	var from int64
	var snapshot bool
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "Print every change under a prefix, one line each, until interrupted",
		Long: `Print every change under a prefix, one line each, until interrupted:

  REVISION PUT KEY VALUE
  REVISION DELETE KEY

A value that is empty or holds line breaks, control characters or spaces at
its ends is printed quoted (Go syntax). -w json prints one JSON object per
line instead. --snapshot first prints the current keys as SNAPSHOT lines.
--from-revision R resumes a watch: the changes from revision R on. If R was
compacted away, a RELIST line and the current keys as SNAPSHOT lines come
first, so nothing is skipped silently.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := newPrinter(cmd.OutOrStdout(), g.output)
			if err != nil {
				return err
			}
			if from < 0 {
				return &usageError{errorf("--from-revision must not be negative")}
			}
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			c, err := client.New(g.agent)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			w := &watchPrinter{out: out, snapshot: snapshot}
			err = config.NewRemote(c.Config()).Watch(ctx, prefix, from, w.print)
			if ctx.Err() != nil {
				return nil
			}
			if w.last > 0 {
				return fmt.Errorf("%w (resume with --from-revision %d)", err, w.last+1)
			}
			return err
		},
	}
	cmd.Flags().Int64Var(&from, "from-revision", 0, "print the changes from this revision on (0: from now)")
	cmd.Flags().BoolVar(&snapshot, "snapshot", false, "first print the current keys")
	return cmd
}

type watchPrinter struct {
	out      *printer
	snapshot bool
	last     int64
}

func (p *watchPrinter) print(u config.Update) error {
	p.last = u.Revision
	if u.Snapshot {
		if u.Relisted {
			if err := p.line(u.Revision, "RELIST", "", nil, u.CompactRevision); err != nil {
				return err
			}
		} else if !p.snapshot {
			return nil
		}
		for _, e := range u.Entries {
			if err := p.line(u.Revision, "SNAPSHOT", e.Key, e.Value, 0); err != nil {
				return err
			}
		}
		return nil
	}
	for _, c := range u.Changes {
		if err := p.line(u.Revision, c.Kind.String(), c.Entry.Key, c.Entry.Value, 0); err != nil {
			return err
		}
	}
	return nil
}

func (p *watchPrinter) line(rev int64, kind, key string, value []byte, compact int64) error {
	var err error
	switch {
	case p.out.IsJSON():
		m := cliout.Object{}.With("revision", rev).With("type", kind)
		if key != "" {
			m = m.With("key", key)
		}
		if kind == "PUT" || kind == "SNAPSHOT" {
			m = m.WithBytes("value", value)
		}
		if compact > 0 {
			m = m.With("compact_revision", compact)
		}
		err = p.out.JSONLine(m)
	case kind == "RELIST":
		_, err = fmt.Fprintf(p.out.W, "%d RELIST compacted-at %d\n", rev, compact)
	case kind == "DELETE":
		_, err = fmt.Fprintf(p.out.W, "%d DELETE %s\n", rev, key)
	default:
		_, err = fmt.Fprintf(p.out.W, "%d %s %s %s\n", rev, kind, key, short(value, len(value)))
	}
	return err
}

func newConfigRenderCmd(g *globals) *cobra.Command {
	r := &config.Renderer{}
	var wait, perms string
	var once bool
	cmd := &cobra.Command{
		Use:   "render --template T --out F [--check CMD] [--exec CMD] [--wait 1s:5s] [--prefix P] [--once]",
		Short: "Render a file from a Go template over config keys, and keep it current",
		Long: `Render a file from a Go text/template over the config keys, then keep it
current until interrupted: after a burst of changes (quiet for the --wait
min, or the max after the first change), render again; if the output
differs from F, write it to a temp file beside F (F's mode kept), run
--check on it, rename it over F, and run --exec.

Template functions: key "a/b", keyOrDefault "a/b" "def", exists "a/b",
ls "a/" (direct children: .Key .Path .Value .Revision), tree "a/" (all
below), revision, env, split, join, trimSpace, toLower, toUpper, replace,
contains, hasPrefix, hasSuffix, parseJSON, toJSON. Dot is a map of every
watched key to its value. A missing key (key "x") fails the render and
keeps the old file. See config/README.md.

--check CMD runs with sh -c; the candidate file's path is $1 and replaces
{{.}} (quoted). A non-zero exit keeps the old file and logs why.
--exec CMD runs with sh -c only when F changed (BEACON_RENDER_OUT and
BEACON_RENDER_REVISION set). --once renders once and exits (non-zero if
the render, the check or exec failed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if wait != "" {
				if r.WaitMin, r.WaitMax, err = config.ParseWait(wait); err != nil {
					return &usageError{errorf("--wait %v", err)}
				}
			}
			if perms != "" {
				n, err := strconv.ParseUint(perms, 8, 32)
				if err != nil || n == 0 || n > 0o777 {
					return &usageError{errorf("--perms %q: want an octal mode like 0644", perms)}
				}
				r.Perms = os.FileMode(n)
			}
			c, err := client.New(g.agent)
			if err != nil {
				return err
			}
			defer c.Close()
			r.Source = config.NewRemote(c.Config())
			if once {
				// The outcome is the one line printed below, or the error.
				ctx, cancel := context.WithTimeout(cmd.Context(), g.callTimeout+2*r.Timeout)
				defer cancel()
				res, err := r.Once(ctx)
				if err != nil {
					return err
				}
				if !res.Changed {
					fmt.Fprintf(cmd.OutOrStdout(), "%s unchanged (revision %d)\n", r.Out, res.Revision)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%s rendered (revision %d)\n", r.Out, res.Revision)
				}
				return nil
			}
			r.Logger = renderLogger(cmd.ErrOrStderr())
			defer r.Logger.Sync() //nolint:errcheck // best effort on stderr
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err = r.Run(ctx)
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.Template, "template", "", "template file (Go text/template)")
	f.StringVar(&r.Out, "out", "", "file to write")
	f.StringVar(&r.Check, "check", "", "command to validate the candidate ($1 or {{.}}) before install")
	f.StringVar(&r.Exec, "exec", "", "command to run after the file changed")
	f.StringVar(&wait, "wait", "", "quiescence min:max, e.g. 1s:5s (default: render after every change)")
	f.StringVar(&r.Prefix, "prefix", "", "watch only the keys under this prefix (the template may read only these)")
	f.StringVar(&perms, "perms", "", "mode of a new file, octal (default 0644; an existing file keeps its mode)")
	f.DurationVar(&r.Timeout, "timeout", config.DefaultCommandTimeout, "bound on --check and --exec")
	f.BoolVar(&once, "once", false, "render once and exit")
	_ = cmd.MarkFlagRequired("template")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// renderLogger writes the renderer's lines to stderr, like the agent's.
func renderLogger(w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	enc.EncodeLevel = zapcore.CapitalLevelEncoder
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), zapcore.InfoLevel))
}
