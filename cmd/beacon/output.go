package main

import (
	"io"

	"github.com/beaconhq/beacon/internal/cliout"
)

// printer writes a command's output per -w: a table, or JSON in the one
// dialect of cliout (README: JSON output).
type printer = cliout.Printer

func newPrinter(w io.Writer, format string) (*printer, error) {
	p, err := cliout.New(w, format)
	if err != nil {
		return nil, &usageError{err}
	}
	return p, nil
}
