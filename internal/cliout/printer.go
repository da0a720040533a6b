package cliout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Formats a Printer takes (the CLI's -w).
const (
	Table = "table"
	JSON  = "json"
)

// ErrFormat: -w named no format a Printer knows.
var ErrFormat = errors.New("output format must be table or json")

// Printer writes one command's output as a table or as JSON.
type Printer struct {
	W      io.Writer
	Format string
}

// New returns a Printer for format (table or json).
func New(w io.Writer, format string) (*Printer, error) {
	switch format {
	case Table, JSON:
		return &Printer{W: w, Format: format}, nil
	}
	return nil, fmt.Errorf("-w %q: %w", format, ErrFormat)
}

// IsJSON reports whether the output is JSON.
func (p *Printer) IsJSON() bool { return p.Format == JSON }

// JSON prints v indented, as one document.
func (p *Printer) JSON(v any) error {
	raw, err := Marshal(v)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err = p.W.Write(b.Bytes())
	return err
}

// JSONLine prints v as one compact line, for streams that print an
// object per event.
func (p *Printer) JSONLine(v any) error {
	raw, err := Marshal(v)
	if err != nil {
		return err
	}
	_, err = p.W.Write(append(raw, '\n'))
	return err
}

// Table prints a header and rows, aligned; an empty cell shows as "-".
func (p *Printer) Table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.W, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
