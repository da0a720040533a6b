package faults

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/faults/check"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The fault phases every holds test runs, in order, each against the
// holder found in the records just before: the holder's host cut off for
// 3×TTL while its CMD ignores SIGTERM (the must-show), its agent paused
// past the TTL, its CLI paused past the TTL, its whole host paused, its
// agent killed (and restarted), and its host split off with a minority.
var holdPhases = []struct {
	kind   string
	ignore bool // the holder's CMD ignores SIGTERM
}{
	{"isolate", true},
	{"pause-agent", false},
	{"pause-cli", true},
	{"pause-host", true},
	{"kill-agent", false},
	{"split", true},
}

// holdsSetup starts 3 voters and 2 proxies and an etcd client of the
// voters for the checkers.
func holdsSetup(t *testing.T) (h *Harness, voters, all []*Host, etcd *clientv3.Client) {
	t.Helper()
	h = New(t)
	vs, ps := h.StartCluster(t.Context(), 3, 2)
	all = append(append([]*Host{}, vs...), ps...)
	cli, err := holdsEtcd(vs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return h, vs, all, cli
}

// runHoldsTest runs the lock or elect workload through every phase.
func runHoldsTest(t *testing.T, kind string) {
	ctx := t.Context()
	h, vs, all, etcd := holdsSetup(t)
	rep := h.NewReport(kind)
	defer rep.Finish(t)
	w := NewHoldWorkload(h, rep, kind, "fx", etcd)
	if err := w.Start(ctx, all); err != nil {
		t.Fatal(err)
	}
	for _, p := range holdPhases {
		start := time.Now()
		w.RunPhase(ctx, t, p.kind, p.ignore, vs, all)
		t.Logf("%s phase %s: %s", kind, p.kind, time.Since(start).Round(100*time.Millisecond))
	}
	if err := h.HealAll(ctx); err != nil {
		t.Error(err)
	}
	if err := w.Stop(ctx); err != nil {
		rep.Anomaly("stopping: %v", err)
	}
	if err := w.Check(ctx, t); err != nil {
		t.Errorf("%s: the history cannot be judged: %v", kind, err)
	}
}

// TestHoldsLock: `beacon lock fx --ttl 2s --grace 500ms -- CMD` in a loop
// on 3 voters and 2 proxies; CMD does fenced writes to one register. Each
// fault of holdPhases hits the holder of the moment. No two CMDs act at
// once (each killed CMD's interval ending at its last act), in token
// order; the register took only writes in token order, none refused or
// superseded; in each phase the old CMD's last act precedes the next
// holder's first act, and where the holder was cut off (isolated, agent
// paused or killed, host paused, split) its last act came within the TTL
// of the cut and a new holder acted during the fault.
func TestHoldsLock(t *testing.T) { runHoldsTest(t, "lock") }

// TestHoldsElect: the same with `beacon elect fx -- CMD`, fenced by the
// leader's key and rev: a superseded leader's writes are refused.
func TestHoldsElect(t *testing.T) { runHoldsTest(t, "elect") }

// TestHoldsQueue: 12 messages, then a long one per phase and three more
// during each fault, on a queue with a worker on each of 3 voters and 2
// proxies (`beacon queue reserve q --ttl 2s --wait 2s --count 0
// --visibility 5s -- CMD`). Each fault hits the worker of the long
// message. After the heal the queue is drained and read from etcd:
// nothing lost, nothing unexpected, every redelivery explained by an
// ended reservation or a crash; no two deliveries of one message acted at
// once; in each phase the old CMD's last act precedes the redelivery's
// first.
func TestHoldsQueue(t *testing.T) {
	ctx := t.Context()
	h, vs, all, etcd := holdsSetup(t)
	rep := h.NewReport("queue")
	defer rep.Finish(t)
	w := NewQueueWorkload(h, rep, "q", etcd)
	if err := w.Start(ctx, all); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		w.Push(ctx, all[i%len(all)], false)
	}
	for _, p := range holdPhases {
		start := time.Now()
		w.RunPhase(ctx, t, p.kind, p.ignore, vs, all)
		t.Logf("queue phase %s: %s", p.kind, time.Since(start).Round(100*time.Millisecond))
	}
	if err := h.HealAll(ctx); err != nil {
		t.Error(err)
	}
	start := time.Now()
	if err := w.Drain(ctx, 60*time.Second); err != nil {
		rep.Anomaly("draining after the heal: %v", err)
	}
	rep.Measure("heal → queue drained", time.Since(start), 60*time.Second)
	if err := w.Stop(ctx); err != nil {
		rep.Anomaly("stopping: %v", err)
	}
	if err := w.Check(ctx, t, vs[0]); err != nil {
		t.Errorf("queue: the history cannot be judged: %v", err)
	}
}

// TestHoldsQueueWorkerPausedPastVisibility: the worker CLI holding a
// long message (its CMD ignoring SIGTERM) is paused (SIGSTOP) for 6 s,
// longer than its --visibility 5s. Its agent keeps the session's lease
// alive, as for a paused `beacon lock`; but the reservation also ends at
// its visibility deadline, which only the paused CLI extends, while CMD
// runs on. The promise — never two workers on one message at once —
// says the message must not go to another worker while CMD acts.
func TestHoldsQueueWorkerPausedPastVisibility(t *testing.T) {
	ctx := t.Context()
	h, vs, all, etcd := holdsSetup(t)
	rep := h.NewReport("queue, worker paused past its visibility")
	defer rep.Finish(t)
	w := NewQueueWorkload(h, rep, "q", etcd)
	if err := w.Start(ctx, all); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		w.Push(ctx, all[i%len(all)], false)
	}
	w.RunPhase(ctx, t, "pause-cli-long", true, vs, all)
	if err := h.HealAll(ctx); err != nil {
		t.Error(err)
	}
	if err := w.Drain(ctx, 60*time.Second); err != nil {
		rep.Anomaly("draining after the heal: %v", err)
	}
	if err := w.Stop(ctx); err != nil {
		rep.Anomaly("stopping: %v", err)
	}
	if err := w.Check(ctx, t, vs[0]); err != nil {
		t.Errorf("queue: the history cannot be judged: %v", err)
	}
}

// TestHoldsLockCLIPausedWhileHostCutOff: two faults at once — the
// holding `beacon lock` paused (SIGSTOP) and its host isolated, for
// 3×TTL — while its CMD, which ignores SIGTERM, acts on. The majority
// lets the lease expire after the TTL and grants the lock to another
// host; by then the old CMD must have stopped, though its CLI, which
// alone would stop it, is paused.
func TestHoldsLockCLIPausedWhileHostCutOff(t *testing.T) {
	ctx := t.Context()
	h, vs, all, etcd := holdsSetup(t)
	rep := h.NewReport("lock, CLI paused while its host is cut off")
	defer rep.Finish(t)
	w := NewHoldWorkload(h, rep, "lock", "fx", etcd)
	if err := w.Start(ctx, all); err != nil {
		t.Fatal(err)
	}
	w.RunPhase(ctx, t, "pause-cli+isolate", true, vs, all)
	if err := h.HealAll(ctx); err != nil {
		t.Error(err)
	}
	if err := w.Stop(ctx); err != nil {
		rep.Anomaly("stopping: %v", err)
	}
	if err := w.Check(ctx, t); err != nil {
		t.Errorf("lock: the history cannot be judged: %v", err)
	}
}

// TestSoakHolds is the long variant (BEACON_SOAK=30m, with -timeout 0;
// BEACON_SOAK_SEED replays a run's choices): the lock, elect and queue
// workloads at once on 3 voters and 2 proxies, under random faults one
// at a time — every network and process fault of the harness, and each
// kind of holdPhases aimed at a holder of a random workload — 0.5 s to
// 3×TTL each, with holders made long and SIGTERM-deaf at random. After
// each heal every agent must serve again and the lock and the election
// must have a new holder within 40 s. At the end the queue is drained and
// every workload judged as in the short tests.
func TestSoakHolds(t *testing.T) {
	if os.Getenv("BEACON_SOAK") == "" {
		t.Skip("the holds soak is the long variant: BEACON_SOAK=30m go test -run TestSoakHolds -timeout 0 ./faults/")
	}
	dur, err := SoakDuration(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	h, vs, all, etcd := holdsSetup(t)
	soak := h.NewReport("holds-soak")
	defer soak.Finish(t)
	lrep, erep, qrep := h.NewReport("soak lock"), h.NewReport("soak elect"), h.NewReport("soak queue")
	defer qrep.Finish(t)
	defer erep.Finish(t)
	defer lrep.Finish(t)
	lock := NewHoldWorkload(h, lrep, "lock", "soak", etcd)
	elect := NewHoldWorkload(h, erep, "elect", "soak", etcd)
	queue := NewQueueWorkload(h, qrep, "soak", etcd)
	// A worker that finds nothing ready within its --wait exits, so a
	// worker loop starts about one CLI every few seconds: 400 starts (the
	// short tests' bound) ran out 25 minutes into a 30-minute soak, and
	// the queue could not drain. One start per second of soak bounds it.
	spawns := holdMaxSpawns + int(dur/time.Second)
	lock.MaxSpawns, elect.MaxSpawns, queue.MaxSpawns = spawns, spawns, spawns
	for _, s := range []interface {
		Start(context.Context, []*Host) error
	}{lock, elect, queue} {
		if err := s.Start(ctx, all); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		queue.Push(ctx, all[i%len(all)], false)
	}
	ws := []holdsWorkload{lock, elect, queue}
	var aimed []FaultGen
	for _, kind := range holdFaultKinds {
		aimed = append(aimed, func(r *rand.Rand) Fault {
			t, ok := ws[r.Intn(len(ws))].holder(false)
			if !ok {
				return nil
			}
			f, _, _, _ := holdFault(kind, t, vs, all)
			return f
		})
	}
	pushes := 0
	h.Soak(ctx, soak, SoakConfig{
		Duration: dur,
		MinHold:  500 * time.Millisecond,
		MaxHold:  3 * HoldTTL,
		Seed:     SoakSeed(),
		Faults:   append(append(NetworkFaults(vs, all), ProcessFaults(all)...), aimed...),
		During: func(ctx context.Context, r *rand.Rand) {
			lock.SetFlags(r.Intn(2) == 0, r.Intn(2) == 0)
			elect.SetFlags(r.Intn(2) == 0, r.Intn(2) == 0)
			queue.SetFlags(true, r.Intn(2) == 0)
			if pushes < 2000 {
				pushes += 2
				queue.Push(ctx, Pick(r, all), r.Intn(4) == 0)
				queue.Push(ctx, Pick(r, all), false)
			}
		},
		AfterHeal: func(ctx context.Context, healed time.Time) error {
			lock.SetFlags(false, false)
			elect.SetFlags(false, false)
			queue.SetFlags(false, false)
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			for _, x := range all {
				if err := x.WaitUp(wctx); err != nil {
					return err
				}
			}
			for _, w := range []*HoldWorkload{lock, elect} {
				if err := w.waitProgress(wctx, healed, 40*time.Second); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err := h.HealAll(ctx); err != nil {
		t.Error(err)
	}
	// Long messages run while the long flag stands, which the soak keeps
	// setting: clear the flags first, or the drain waits on them.
	lock.SetFlags(false, false)
	elect.SetFlags(false, false)
	queue.SetFlags(false, false)
	if err := queue.Drain(ctx, 2*time.Minute); err != nil {
		qrep.Anomaly("draining after the soak: %v", err)
	}
	for _, w := range []*HoldWorkload{lock, elect} {
		if err := w.Stop(ctx); err != nil {
			w.rep.Anomaly("stopping: %v", err)
		}
		if err := w.Check(ctx, t); err != nil {
			t.Errorf("%s: the history cannot be judged: %v", w.Kind, err)
		}
	}
	if err := queue.Stop(ctx); err != nil {
		qrep.Anomaly("stopping: %v", err)
	}
	if err := queue.Check(ctx, t, vs[0]); err != nil {
		t.Errorf("queue: the history cannot be judged: %v", err)
	}
}

// waitProgress waits until a CMD has entered after since, within d.
func (w *HoldWorkload) waitProgress(ctx context.Context, since time.Time, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		runs, _, err := w.runs()
		if err != nil {
			return fmt.Errorf("%s %s: reading the records: %v", w.Kind, w.Name, err)
		}
		if err == nil {
			for _, r := range runs {
				if r.Enter > since.UnixNano() {
					return nil
				}
			}
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("%s %s: no new holder within %s of the heal", w.Kind, w.Name, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHoldsCheckersCatchViolations feeds the holds workloads' record
// readers and judges hand-written records, good and bad, so that a
// violation in a real run cannot go unseen: a SIGKILLed CMD's interval
// ends at its last act (a late act overlaps the next holder), and so
// does an exited CMD's whose group wrote after its exit line; a
// superseded holder's write that etcd took; two deliveries of one
// message acting at once.
func TestHoldsCheckersCatchViolations(t *testing.T) {
	type act struct {
		host string
		line string // "<t> <pid> <kind> <args…>"
	}
	type enter struct {
		host     string
		t        int64
		pid, tok int
		exit     int64 // 0: none
	}
	const base = int64(1_800_000_000_000_000_000)
	var faultLog []FaultRecord // the harness's fault log for the next run
	run := func(t *testing.T, enters []enter, acts []act, observed []string) []string {
		h := &Harness{t: t, dir: t.TempDir(), faultLog: faultLog}
		h.events = &Events{Dir: filepath.Join(h.dir, "events")}
		if err := os.MkdirAll(h.events.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		rep := h.NewReport("self-test")
		w := NewHoldWorkload(h, rep, "lock", "fx", nil)
		w.hosts = []*Host{{Name: "n1"}, {Name: "n2"}}
		if err := os.MkdirAll(filepath.Join(w.dir, "out"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range enters {
			ev := check.Event{Time: base + e.t, Kind: check.Enter, Host: e.host, PID: e.pid, PPID: 1, Token: int64(e.tok), Name: "fx"}
			if err := check.AppendEvent(filepath.Join(w.dir, e.host+".jsonl"), ev); err != nil {
				t.Fatal(err)
			}
			if e.exit != 0 {
				ev.Kind, ev.Time = check.Exit, base+e.exit
				if err := check.AppendEvent(filepath.Join(w.dir, e.host+".jsonl"), ev); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, a := range acts {
			f := strings.Fields(a.line)
			n, _ := strconv.ParseInt(f[0], 10, 64)
			line := fmt.Sprintf("%d %s\n", base+n, strings.Join(f[1:], " "))
			fh, err := os.OpenFile(filepath.Join(w.dir, a.host+".acts"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			fh.WriteString(line)
			fh.Close()
			if f[2] == "put" && f[4] == "0" {
				os.WriteFile(filepath.Join(w.dir, "out", f[3]), []byte(`{"revision": "9"}`), 0o644)
			}
		}
		runs, events, err := w.runs()
		if err != nil {
			t.Fatal(err)
		}
		final := ""
		if len(observed) > 0 {
			final = observed[len(observed)-1]
		}
		if _, err := w.judge(t, runs, events, final, observed); err != nil {
			t.Fatal(err)
		}
		return rep.Anomalies()
	}
	good := []act{
		{"n1", "110 100 act n1.100.10.1"}, {"n1", "150 100 put n1.100.10.1 0"}, {"n1", "300 100 tick"},
		{"n2", "410 200 act n2.200.20.1"}, {"n2", "450 200 put n2.200.20.1 0"},
	}
	enters := []enter{{"n1", 100, 100, 10, 0}, {"n2", 400, 200, 20, 600}}
	t.Run("good", func(t *testing.T) {
		if a := run(t, enters, good, []string{"n1.100.10.1", "n2.200.20.1"}); len(a) != 0 {
			t.Fatalf("anomalies in a good history: %q", a)
		}
	})
	t.Run("killed CMD acted late", func(t *testing.T) {
		a := run(t, enters, append(good, act{"n1", "500 100 tick"}), []string{"n1.100.10.1", "n2.200.20.1"})
		if len(a) != 1 || !strings.Contains(a[0], "overlap") {
			t.Fatalf("want one overlap, got %q", a)
		}
	})
	t.Run("line after exit, before the next holder", func(t *testing.T) {
		exited := []enter{{"n1", 100, 100, 10, 320}, {"n2", 400, 200, 20, 600}}
		a := run(t, exited, append(good, act{"n1", "330 100 tick"}, act{"n2", "700 200 tick"}), []string{"n1.100.10.1", "n2.200.20.1"})
		if len(a) != 0 {
			t.Fatalf("anomalies for CMD group lines after the exit line that end before the next holder: %q", a)
		}
	})
	t.Run("line after exit, past the next holder's enter", func(t *testing.T) {
		exited := []enter{{"n1", 100, 100, 10, 320}, {"n2", 400, 200, 20, 600}}
		a := run(t, exited, append(good, act{"n1", "420 100 tick"}), []string{"n1.100.10.1", "n2.200.20.1"})
		if len(a) != 1 || !strings.Contains(a[0], "overlap") {
			t.Fatalf("want one overlap, got %q", a)
		}
	})
	// n1's CMD (killed, last line at 500) was frozen with its whole host
	// from 150 to 480 while n2's entered at 400: the thaw let it run 20 ns
	// more, within the documented window; 200 ms more is an anomaly.
	pause := func(to int64) []FaultRecord {
		return []FaultRecord{{ID: 1, Fault: "pause host n1", Start: time.Unix(0, base+150), End: time.Unix(0, base+to)}}
	}
	late := append(good, act{"n1", "500 100 tick"})
	t.Run("thawed host ran within the window", func(t *testing.T) {
		faultLog = pause(480)
		defer func() { faultLog = nil }()
		if a := run(t, enters, late, []string{"n1.100.10.1", "n2.200.20.1"}); len(a) != 0 {
			t.Fatalf("anomalies for a CMD that ran 20ns after its host thawed: %q", a)
		}
	})
	t.Run("thawed host ran past the window", func(t *testing.T) {
		faultLog = pause(500 - int64(200*time.Millisecond))
		defer func() { faultLog = nil }()
		a := run(t, enters, late, []string{"n1.100.10.1", "n2.200.20.1"})
		if !slices.ContainsFunc(a, func(s string) bool { return strings.Contains(s, "after its host thawed") }) {
			t.Fatalf("want a thaw-window anomaly, got %q", a)
		}
	})
	t.Run("a pause shorter than the hold", func(t *testing.T) {
		// n1's CMD paused with its host and went on long after: nobody
		// else entered meanwhile, so there is nothing to judge.
		faultLog = pause(160)
		defer func() { faultLog = nil }()
		alone := []enter{{"n1", 100, 100, 10, int64(time.Second)}}
		if a := run(t, alone, good[:3], []string{"n1.100.10.1"}); len(a) != 0 {
			t.Fatalf("anomalies for a CMD that outlived a short pause alone: %q", a)
		}
	})
	t.Run("superseded write applied", func(t *testing.T) {
		stale := append(good, act{"n1", "460 100 act n1.100.10.2"})
		a := run(t, enters, stale, []string{"n1.100.10.1", "n2.200.20.1", "n1.100.10.2"})
		if !slices.ContainsFunc(a, func(s string) bool { return strings.Contains(s, "superseded-write-applied") }) ||
			!slices.ContainsFunc(a, func(s string) bool { return strings.Contains(s, "overlap") }) {
			t.Fatalf("want an overlap and a superseded write, got %q", a)
		}
	})
	t.Run("queue deliveries overlap", func(t *testing.T) {
		h := &Harness{t: t, dir: t.TempDir()}
		w := NewQueueWorkload(h, nil, "q", nil)
		w.hosts = []*Host{{Name: "n1"}, {Name: "n2"}}
		os.MkdirAll(w.dir, 0o755)
		write := func(host, s string) {
			var b strings.Builder
			for _, l := range strings.Split(s, "\n") {
				f := strings.Fields(l)
				n, _ := strconv.ParseInt(f[0], 10, 64)
				fmt.Fprintf(&b, "%d %s\n", base+n, strings.Join(f[1:], " "))
			}
			os.WriteFile(w.recs(&Host{Name: host}), []byte(b.String()), 0o644)
		}
		write("n1", "100 100 start 7 q/7/30 1 90 long-7-n1\n110 100 act 7 1\n500 100 act 7 2")
		write("n2", "400 200 start 7 q/7/40 2 95 long-7-n1\n410 200 act 7 1\n450 200 done 7")
		ds, err := w.deliveries()
		if err != nil {
			t.Fatal(err)
		}
		a, err := check.CheckExclusive(holdDeliveryEvents(ds), 1)
		if err != nil || len(a) != 1 || a[0].Kind != check.KindOverlap {
			t.Fatalf("want one overlap, got %v, %v", a, err)
		}
		write("n1", "100 100 start 7 q/7/30 1 90 long-7-n1\n110 100 act 7 1\n300 100 act 7 2")
		ds, _ = w.deliveries()
		if a, err := check.CheckExclusive(holdDeliveryEvents(ds), 1); err != nil || len(a) != 0 {
			t.Fatalf("want no anomaly, got %v, %v", a, err)
		}
	})
}
