package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// lockComparison is `beacon bench lock --tls` or `--acl`: the same
// workload against two agents of this binary, one with the feature off
// (side 0) and one with it on (side 1).
type lockComparison struct {
	flag   string    // "--tls"
	names  [2]string // "TLS off", "TLS on"
	agents string    // what the two agents are, for the header
	start  func(on bool) (*agentProc, func(), error)
	notes  []string // the footer's lines
}

// lockCompare runs the comparison in turns (off, on, then on, off), so
// that what else the machine does falls on both alike, and prints the
// mean of each side and the ratio.
func lockCompare(ctx context.Context, w io.Writer, o LockOptions, c lockComparison) error {
	var agents [2]*agentProc
	for i, on := range []bool{false, true} {
		a, done, err := c.start(on)
		if err != nil {
			return err
		}
		defer done()
		agents[i] = a
	}
	var runs [2][]*lockFigures
	for _, order := range [][2]int{{0, 1}, {1, 0}} {
		for _, i := range order {
			f, err := lockMeasure(ctx, o, agents[i])
			if err != nil {
				return fmt.Errorf("%s: %w", c.names[i], err)
			}
			runs[i] = append(runs[i], f)
		}
	}
	mean := func(fs []*lockFigures, get func(*lockFigures) float64) float64 {
		var sum float64
		for _, f := range fs {
			sum += get(f)
		}
		return sum / float64(len(fs))
	}
	p := func(q float64, lat func(*lockFigures) []time.Duration) func(*lockFigures) float64 {
		return func(f *lockFigures) float64 {
			p50, p99 := percentiles(lat(f))
			if q == 0.5 {
				return ms(p50)
			}
			return ms(p99)
		}
	}
	bLat := func(f *lockFigures) []time.Duration { return f.bLat }
	pLat := func(f *lockFigures) []time.Duration { return f.pLat }
	rows := []struct {
		label string
		get   func(*lockFigures) float64
		unit  string
	}{
		{"beacon acquire+release p50", p(0.5, bLat), "ms"},
		{"beacon acquire+release p99", p(0.99, bLat), "ms"},
		{fmt.Sprintf("beacon handoffs/s, %d contenders", o.Contenders), func(f *lockFigures) float64 { return f.bRate }, "/s"},
		{"Mutex acquire+release p50", p(0.5, pLat), "ms"},
		{"Mutex acquire+release p99", p(0.99, pLat), "ms"},
		{fmt.Sprintf("Mutex handoffs/s, %d contenders", o.Contenders), func(f *lockFigures) float64 { return f.pRate }, "/s"},
	}
	fmt.Fprintf(w, "beacon bench lock %s: %d uncontended pairs, %d contenders for %s, per side and run;\n", c.flag, o.Samples, o.Contenders, o.Duration)
	fmt.Fprintf(w, "two agents, %s; 2 runs each in turns, means:\n\n", c.agents)
	fmt.Fprintf(w, "%-36s %12s %12s %8s\n", "", c.names[0], c.names[1], "ratio")
	for _, r := range rows {
		off, on := mean(runs[0], r.get), mean(runs[1], r.get)
		format := "%-36s %10.3f%s %10.3f%s %7.2fx\n"
		if r.unit == "/s" {
			format = "%-36s %10.1f%s %10.1f%s %7.2fx\n"
		}
		fmt.Fprintf(w, format, r.label, off, r.unit, on, r.unit, on/max(off, 1e-9))
	}
	fmt.Fprintln(w)
	for _, n := range c.notes {
		fmt.Fprintln(w, n)
	}
	return nil
}
