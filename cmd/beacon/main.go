// Command beacon runs the beacon agent and talks to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func main() {
	root := newRoot()
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "beacon: "+oneLine(err))
		var ue *usageError
		var ee *exitError
		switch {
		case errors.As(err, &ue):
			os.Exit(2)
		case errors.As(err, &ee):
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// global flags shared by the client commands.
type globals struct {
	agent       string
	output      string
	callTimeout time.Duration
	tls         tlsFlags
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "beacon",
		Short:         "Service discovery and coordination sidecar on embedded etcd",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// main prints "beacon: " before every error: name the command
		// below it, once.
		if c.HasParent() {
			err = fmt.Errorf("%s: %w", strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" "), err)
		}
		return &usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.agent, "agent", "", "agent API address, host:port or unix:PATH (env BEACON_AGENT, default 127.0.0.1:7600)")
	pf.StringVarP(&g.output, "output", "w", "table", "output format: table or json")
	pf.DurationVar(&g.callTimeout, "call-timeout", 10*time.Second, "how long to wait for the agent to answer")
	g.tls.bind(pf)
	bindToken(pf)
	// Every client command, the recipes' and the benchmarks' included,
	// dials through client.New, which reads the TLS files and the token
	// from the environment: the flags go there, so that they reach all
	// of them.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if err := g.tls.export(cmd); err != nil {
			return err
		}
		return exportToken(cmd)
	}
	root.AddCommand(
		newAgentCmd(),
		newMembersCmd(g),
		newStatusCmd(g),
		newLeaveCmd(g),
		newRegisterCmd(g),
		newDeregisterCmd(g),
		newServicesCmd(g),
		newCheckCmd(g),
		newVersionCmd(g),
		bindBenchACL(newBenchCmd()),
	)
	for _, mk := range extraCommands {
		root.AddCommand(mk(g))
	}
	checkUsage(root)
	return root
}

// extraCommands are added by the recipes' files (lock.go, elect.go, ...)
// from init, so each recipe's commands live in a file of its own.
var extraCommands []func(*globals) *cobra.Command

// oneLine keeps an error on one line, and says what a gRPC status means
// rather than printing its Go form.
func oneLine(err error) string {
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK {
		msg := s.Message()
		if s.Code() == codes.Unavailable && strings.Contains(msg, "connection refused") {
			msg = "cannot reach the agent (is `beacon agent` running? set --agent or BEACON_AGENT): " + msg
		}
		if s.Code() == codes.Unavailable && closedByAgent(msg) {
			// A TLS listener hangs up on a plain client's first bytes; an
			// agent over its connection limits closes a new connection
			// at once (its log names the limit).
			msg = "the agent closed the connection (does its API require TLS? give --ca-file, --cert-file and --key-file; " +
				"or this host holds the agent's max-connections-per-client, or the agent its max-connections: its log names which): " + msg
		}
		// "permission denied: permission denied: …" says it twice.
		if words := codeWords(s.Code()); !strings.HasPrefix(msg, words) {
			msg = words + ": " + msg
		}
		err = errors.New(msg)
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// closedByAgent: the message of a connection the agent closed before it
// spoke HTTP/2 (EOF, or a reset when the client's first bytes were still
// unread).
func closedByAgent(msg string) bool {
	for _, s := range []string{"error reading server preface", "connection reset by peer", "broken pipe"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// codeWords spells a gRPC code as words: FailedPrecondition → "failed precondition".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToLower(b.String())
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
