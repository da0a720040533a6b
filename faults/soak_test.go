package faults

import (
	"context"
	"math/rand"
	"testing"
	"time"
)

// TestSoak injects random faults — network (isolate, split a minority,
// one-way cut, delay, loss) and process (kill -9 and restart, pause the
// agent, pause the whole host, restart) — one at a time on three voters
// and two proxies, while the registry workload registers and deregisters
// instances and every agent's DNS is asked every 200 ms. After each heal
// every agent must converge on the same answer: every instance registered
// OK, none deregistered OK, the indeterminate ones either way.
//
// `go test ./faults/...` runs it for 15 s; BEACON_SOAK=30m (with
// -timeout 0) runs it for 30 minutes; BEACON_SOAK_SEED replays a run's
// choices.
func TestSoak(t *testing.T) {
	dur, err := SoakDuration(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	h := New(t, WithAgentArgs("--node-ttl", nodeTTL.String()))
	vs, ps := h.StartCluster(ctx, 3, 2)
	all := append(append([]*Host{}, vs...), ps...)
	rep := h.NewReport("soak")
	defer rep.Finish(t)
	w := NewRegistryWorkload(h, rep, "soak")

	start := time.Now()
	for _, x := range all {
		if id, o, err := w.Register(ctx, x); o != OK {
			t.Fatalf("register %s on %s: %s: %v", id, x, o, err)
		}
	}
	if _, err := w.WaitConverged(ctx, start, all, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	stop := w.Probe(ctx, all, 200*time.Millisecond)
	defer stop()

	var worst time.Duration
	h.Soak(ctx, rep, SoakConfig{
		Duration: dur,
		MinHold:  500 * time.Millisecond,
		MaxHold:  3 * time.Second,
		Seed:     SoakSeed(),
		Faults:   append(NetworkFaults(vs, all), ProcessFaults(all)...),
		During: func(ctx context.Context, r *rand.Rand) {
			// Churn: a registration, and a deregistration of one made OK.
			x := Pick(r, all)
			_, _, _ = w.Register(ctx, x)
			if ids := w.Registered(x); len(ids) > 1 {
				_, _ = w.Deregister(ctx, ids[r.Intn(len(ids))])
			}
		},
		AfterHeal: func(ctx context.Context, healed time.Time) error {
			d, err := w.WaitConverged(ctx, healed, all, 60*time.Second)
			worst = max(worst, d)
			return err
		},
	})
	stop()
	rep.Measure("worst heal → every agent converged", worst, 30*time.Second)
}
