package check

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// ErrInconclusive is returned when porcupine could not decide within its
// time limit; it is not an anomaly, but the run proved nothing either.
var ErrInconclusive = errors.New("linearizability check inconclusive: out of time")

// An Option tunes CheckFencedLinearizable.
type Option func(*options)

type options struct {
	visualizeDir string
	timeout      time.Duration
}

// WithVisualization makes a failed check write porcupine's HTML
// visualisation (the longest linearizable prefix of each client's
// operations, and where it got stuck) into dir, and name the file in the
// anomaly.
func WithVisualization(dir string) Option { return func(o *options) { o.visualizeDir = dir } }

// WithTimeout bounds porcupine's search (default one minute; 0: none).
// Linearizability checking is NP-complete; histories with many concurrent
// indeterminate writes can take long.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// fencedState is the model register: its value and the highest token
// applied so far.
type fencedState struct {
	token int64
	value string
}

type fencedInput struct {
	write bool
	token int64
	value string
}

type fencedOutput struct {
	outcome Outcome
	value   string // of a read
}

// FencedModel is porcupine's sequential specification of a fenced
// register: a write with token t applies only if t is at least the highest
// token applied so far (a later grant ends every earlier one); a read
// returns the current value.
//
//   - an OK write is legal only if t >= the highest token, and applies;
//   - a Failed write is always legal and changes nothing (a grant can end
//     without anyone else writing);
//   - an Indeterminate write has Return = +infinity, and applies if its
//     token allows: "it never applied" is the linearization that puts it
//     after everything else, so both cases are covered;
//   - a read is legal only if it returns the current value.
var FencedModel = porcupine.Model{
	Init: func() any { return fencedState{} },
	Step: func(state, input, output any) (bool, any) {
		st, in, out := state.(fencedState), input.(fencedInput), output.(fencedOutput)
		if !in.write {
			return out.value == st.value, st
		}
		switch {
		case out.outcome == Failed:
			return true, st
		case in.token >= st.token:
			return true, fencedState{in.token, in.value}
		default:
			return out.outcome == Indeterminate, st
		}
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(fencedInput), output.(fencedOutput)
		if !in.write {
			return fmt.Sprintf("read() -> %q", out.value)
		}
		return fmt.Sprintf("write(token %d, %q) -> %s", in.token, in.value, out.outcome)
	},
	DescribeState: func(state any) string {
		st := state.(fencedState)
		return fmt.Sprintf("%q (token %d)", st.value, st.token)
	},
}

// CheckFencedLinearizable checks the history with porcupine against
// FencedModel, starting from h.Initial. OK reads and h.Final (as a read
// after everything else returned) are the observations; Observed is left
// to CheckFencedDirect. It returns one KindNotLinearizable anomaly if no
// linearization exists, naming the visualisation file if WithVisualization
// was given.
func CheckFencedLinearizable(h FencedHistory, opts ...Option) ([]Anomaly, error) {
	o := options{timeout: time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := h.validate(); err != nil {
		return nil, err
	}
	ops := fencedOperations(h)
	model := FencedModel
	model.Init = func() any { return fencedState{value: h.Initial} }

	res, info := porcupine.CheckOperationsVerbose(model, ops, o.timeout)
	switch res {
	case porcupine.Ok:
		return nil, nil
	case porcupine.Unknown:
		return nil, fmt.Errorf("%w after %s (%d operations)", ErrInconclusive, o.timeout, len(ops))
	}
	text := fmt.Sprintf("no linearization of %d operations under the fenced-register model", len(ops))
	if o.visualizeDir != "" {
		if path, err := visualize(model, info, o.visualizeDir); err != nil {
			text += fmt.Sprintf(" (visualisation failed: %v)", err)
		} else {
			text += "; visualisation: " + path
		}
	}
	return []Anomaly{{KindNotLinearizable, text}}, nil
}

// fencedOperations turns the history into porcupine operations, clients
// numbered from 0 in order of name as the visualisation wants them.
func fencedOperations(h FencedHistory) []porcupine.Operation {
	clients := make(map[string]int)
	for _, w := range h.Writes {
		clients[w.Client] = 0
	}
	for _, r := range h.Reads {
		clients[r.Client] = 0
	}
	names := make([]string, 0, len(clients)+1)
	for c := range clients {
		names = append(names, c)
	}
	sort.Strings(names)
	for i, c := range names {
		clients[c] = i
	}

	var ops []porcupine.Operation
	last := int64(0)
	for _, w := range h.Writes {
		ret := w.Return
		if w.Outcome == Indeterminate {
			ret = math.MaxInt64 // may take effect any time after its call
		}
		last = max(last, w.Invoke)
		if ret != math.MaxInt64 {
			last = max(last, ret)
		}
		ops = append(ops, porcupine.Operation{ClientId: clients[w.Client], Input: fencedInput{true, w.Token, w.Value},
			Call: w.Invoke, Output: fencedOutput{outcome: w.Outcome}, Return: ret, Metadata: w.Client})
	}
	for _, r := range h.Reads {
		if r.Outcome != OK {
			continue
		}
		last = max(last, r.Return)
		ops = append(ops, porcupine.Operation{ClientId: clients[r.Client], Input: fencedInput{},
			Call: r.Invoke, Output: fencedOutput{outcome: OK, value: r.Value}, Return: r.Return, Metadata: r.Client})
	}
	if h.Final != nil {
		ops = append(ops, porcupine.Operation{ClientId: len(names), Input: fencedInput{},
			Call: last + 1, Output: fencedOutput{outcome: OK, value: *h.Final}, Return: last + 2, Metadata: "final"})
	}
	return ops
}

func visualize(model porcupine.Model, info porcupine.LinearizationInfo, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "fenced-*.html")
	if err != nil {
		return "", err
	}
	if err := porcupine.Visualize(model, info, f); err != nil {
		f.Close()
		return "", err
	}
	return f.Name(), f.Close()
}
