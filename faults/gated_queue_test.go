package faults

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestGatedQueue: two gated queues (a count gate with a --last message,
// an --after gate whose first task takes 2 s) on 3 voters and 2 proxies,
// workers on every host, messages pushed from random hosts while a
// minority is split off, a voter's agent is killed, and a proxy is
// isolated. etcd's history of both queues must show no reservation under
// a closed gate (but the first task's), no gate opened before its
// condition held, the --last message reserved alone, and every message
// whose push answered an id acked.
func TestGatedQueue(t *testing.T) {
	ctx := t.Context()
	h, vs, all, etcd := holdsSetup(t)
	rep := h.NewReport("gated-queue")
	defer rep.Finish(t)
	w := NewGatedWorkload(h, rep, etcd)
	if err := w.Start(ctx, all); err != nil {
		t.Fatal(err)
	}
	// The first task's holder: its agent is the one killed.
	var holder *Host
	var held int64
	if err := pollUntil(ctx, 20*time.Second, func() bool { holder, held = w.FirstHolder(ctx); return holder != nil }); err != nil {
		t.Fatalf("no worker took ga's first task: %v", err)
	}
	steps := []struct {
		fault Fault
		big   bool
	}{
		{Split(vs[2], all[4]), false},
		{KillAgent(holder), true},
		{Isolate(all[3]), false},
	}
	for _, s := range steps {
		a, err := h.Inject(ctx, s.fault)
		if err != nil {
			t.Fatal(err)
		}
		w.PushSome(ctx, 3, s.big)
		holdSleep(ctx, 2*time.Second) // the workers run under the fault a while
		if err := a.Heal(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	// The first task was taken again after its holder's agent died.
	if err := pollUntil(ctx, 30*time.Second, func() bool { x, rev := w.FirstHolder(ctx); return x != nil && rev != held }); err != nil {
		rep.Anomaly("ga's first task was not delivered again after %s's agent was killed: %v", holder, err)
	}
	w.Release()
	// Enough pushes that answered for the count gate, whatever failed.
	for i := 0; i < 30 && w.Pushed("gc") < GatedCount+1; i++ {
		w.Push(ctx, vs[1], "gc", "", false)
	}
	if err := w.Drain(ctx, 90*time.Second); err != nil {
		rep.Anomaly("draining: %v", err)
	}
	if err := w.Stop(); err != nil {
		rep.Anomaly("stopping: %v", err)
	}
	if err := w.Check(ctx); err != nil {
		t.Errorf("the history cannot be judged: %v", err)
	}
}

// pollUntil polls ok every 100 ms until it holds, within d.
func pollUntil(ctx context.Context, d time.Duration, ok func() bool) error {
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			return fmt.Errorf("not within %s", d)
		}
		if !holdSleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}
