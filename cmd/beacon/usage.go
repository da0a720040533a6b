package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// usageError is a mistake in the command line: beacon exits 2 (1 for any
// other error), having printed one line that says what to write instead.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// checkUsage makes every wrong argument a usage error: a command's
// argument checks say so, and every command that groups others (beacon,
// config, queue, bench, acl, ...) refuses a word that is none of its
// subcommands, with a suggestion; alone, a group prints its help.
func checkUsage(c *cobra.Command) {
	for _, sub := range c.Commands() {
		checkUsage(sub)
	}
	if args := c.Args; args != nil {
		c.Args = func(c *cobra.Command, a []string) error {
			err := args(c, a)
			var ue *usageError
			if err != nil && !errors.As(err, &ue) {
				err = &usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
			}
			return err
		}
	}
	if !c.HasSubCommands() || c.Run != nil || c.RunE != nil {
		return
	}
	c.Args = unknownSubcommand
	c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
}

func unknownSubcommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	c.SuggestionsMinimumDistance = 2
	hint := ""
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		hint = "did you mean " + strings.Join(s, " or ") + "?"
	} else {
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		hint = "its commands are " + strings.Join(names, ", ")
	}
	return &usageError{fmt.Errorf("unknown command %q for %q: %s (see %s --help)", args[0], c.CommandPath(), hint, c.CommandPath())}
}

// exitNoQuorum is beacon status's exit code when the cluster has no
// quorum: the report is printed, and scripts can tell this from an agent
// that did not answer (1).
const exitNoQuorum = 3

// exitError is an error with an exit code of its own.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
