package check

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrCorrupt is wrapped by the *ParseError of a line that is not an event.
var ErrCorrupt = errors.New("corrupt event log")

// ParseError names the file and line of a record that cannot be read.
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %v: %v", e.File, e.Line, ErrCorrupt, e.Err)
}

func (e *ParseError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// ParseEvents reads an interval log (name is for messages and
// Event.Source). Blank lines are skipped. A last line without its newline
// that does not parse is a write torn by a crash and is dropped; any other
// line that does not parse, or parses into an invalid event, is an error:
// a checker that skipped records could pass a history it never saw.
func ParseEvents(r io.Reader, name string) ([]Event, error) {
	br := bufio.NewReader(r)
	var events []Event
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		complete := len(line) > 0 && line[len(line)-1] == '\n'
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			e, perr := parseEvent(trimmed)
			switch {
			case perr == nil:
				e.Source = fmt.Sprintf("%s:%d", name, n)
				events = append(events, e)
			case !complete:
				// The torn tail of a writer killed mid-write.
			default:
				return nil, &ParseError{File: name, Line: n, Err: perr}
			}
		}
		if err == io.EOF {
			return events, nil
		}
	}
}

func parseEvent(line []byte) (Event, error) {
	var e Event
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Event{}, err
	}
	if dec.More() {
		return Event{}, errors.New("more than one JSON value on the line")
	}
	if err := e.validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// ReadEvents parses the logs at paths (typically one per writer, found
// with filepath.Glob) and returns their events, file after file.
func ReadEvents(paths ...string) ([]Event, error) {
	var all []Event
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		events, err := ParseEvents(f, p)
		f.Close()
		if err != nil {
			return nil, err
		}
		all = append(all, events...)
	}
	return all, nil
}
