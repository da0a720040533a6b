package faults

import (
	"testing"
	"time"
)

// TestBarrierUnderFaults: rounds of `beacon barrier fx --count 3 -- CMD`
// on 3 voters and 2 proxies, one barrier name for all of them. In each
// round one of the first two participants is taken out while it waits:
// its CLI killed with kill -9, its host isolated, its agent killed with
// kill -9; in the last round a voter is cut off all along as well.
// Replacements on other hosts complete the count. Each round: the
// participant taken out is dropped (its session's key goes), never runs
// CMD and its CLI fails; the three others run CMD exactly once, in one
// barrier round, none before the participant that completed the count
// was launched; the barrier is empty afterwards.
func TestBarrierUnderFaults(t *testing.T) {
	ctx := t.Context()
	h, vs, all, _ := holdsSetup(t)
	n1, n2, n3, p1, p2 := vs[0], vs[1], vs[2], all[3], all[4]
	rep := h.NewReport("barrier")
	defer rep.Finish(t)
	// The checker reads through n1, which no fault hits: a client of all
	// voters stays pinned to a cut-off one.
	etcd, err := holdsEtcd([]*Host{n1})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	w, err := NewBarrierWorkload(h, rep, "fx", 3, etcd)
	if err != nil {
		t.Fatal(err)
	}
	inject := func(f Fault) func(p *barrierPart) (func() error, error) {
		return func(p *barrierPart) (func() error, error) {
			a, err := h.Inject(ctx, f)
			if err != nil {
				return nil, err
			}
			return func() error { return a.Heal(ctx) }, nil
		}
	}
	for _, r := range []struct {
		what  string
		hosts []*Host
		out   func(p *barrierPart) (func() error, error)
	}{
		{"kill -9 of a waiting CLI", []*Host{p1, n1, n2, p2}, barrierKillCLI},
		{"the waiting participant's host isolated", []*Host{p1, n1, n2, p2}, inject(Isolate(p1))},
		{"kill -9 of the waiting participant's agent", []*Host{p2, n2, p1, n1}, inject(KillAgent(p2))},
	} {
		start := time.Now()
		w.Round(ctx, r.what, r.hosts, r.out)
		t.Logf("barrier round %q: %s", r.what, time.Since(start).Round(100*time.Millisecond))
	}
	cut, err := h.Inject(ctx, Isolate(n3))
	if err != nil {
		t.Fatal(err)
	}
	// If n3 led, the others elect a leader first (a session cannot open
	// meanwhile): wait until a quorum read through n1 answers.
	if err := w.waitIn(ctx, 0, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Proxies whose etcd connection went to n3 see it die under their
	// calls (Unavailable): the barrier enters again on another.
	w.Round(ctx, "kill -9 of a waiting CLI, a voter cut off", []*Host{n1, p1, p2, n2}, barrierKillCLI)
	if err := cut.Heal(ctx); err != nil {
		t.Error(err)
	}
	if err := h.HealAll(ctx); err != nil {
		t.Error(err)
	}
}
