package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// GatedWorkload runs two gated queues on every host of a fleet while
// faults hit it: "gc", behind `gate --count GatedCount`, with one --last
// message among its pushes; and "ga", whose first message is pushed
// first and gated `--after` it (that task takes 2 s, so kills land on
// it). Workers on every host, `beacon queue reserve Q --ttl 2s --wait 2s
// --count 0 -- CMD`, restarted when they exit. Check replays etcd's
// history of both queues: no reservation under a closed gate (but the
// first task's), no gate opened before its condition held, the --last
// message reserved only when it was alone in its queue, and every
// message whose push answered an id acked.
type GatedWorkload struct {
	h     *Harness
	rep   *Report
	etcd  *clientv3.Client
	hosts []*Host
	dir   string

	startRev int64
	first    string // ga's first task's id

	mu     sync.Mutex
	seq    int
	pushed map[string][]string // queue -> payloads of pushes that answered an id
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// GatedCount is gc's gate.
const GatedCount = 10

// NewGatedWorkload prepares the workload; etcd is a client of the voters.
func NewGatedWorkload(h *Harness, rep *Report, etcd *clientv3.Client) *GatedWorkload {
	return &GatedWorkload{h: h, rep: rep, etcd: etcd, dir: filepath.Join(h.Dir(), "gated"), pushed: map[string][]string{}}
}

func gatedPrefix(queue string) string { return "/beacon/queues/" + queue + "/" }

// gatedScript: the first task runs while the hold flag exists (at most
// 60 s), so that faults hit it; the big one takes 1 s, the others 0.2 s.
const gatedScript = `p=$(cat); i=0
case "$p" in
first*) while [ -e @HOLD@ ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;;
big*) sleep 1;;
*) sleep 0.2;;
esac`

// Start gates both queues and starts the workers on hosts.
func (w *GatedWorkload) Start(ctx context.Context, hosts []*Host) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	w.hosts = hosts
	holdTouch(w.hold())
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.etcd.Get(gctx, "/beacon/queues/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return err
	}
	w.startRev = resp.Header.Revision
	if res := hosts[0].Run(ctx, "queue", "gate", "gc", "--count", fmt.Sprint(GatedCount)); !res.OK() {
		return fmt.Errorf("gate gc: %s", res.Line())
	}
	id, o := w.Push(ctx, hosts[0], "ga", "first", false)
	if o != OK {
		return fmt.Errorf("pushing ga's first task: %s", o)
	}
	w.first = id
	if res := hosts[1].Run(ctx, "queue", "gate", "ga", "--after", id); !res.OK() {
		return fmt.Errorf("gate ga: %s", res.Line())
	}
	lctx, stop := context.WithCancel(context.Background())
	w.cancel = stop
	for _, x := range hosts {
		for _, q := range []string{"gc", "ga"} {
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				argv := func() []string {
					return []string{"beacon", "queue", "reserve", q, "--ttl", HoldTTL.String(), "--grace", HoldGrace.String(),
						"--wait", "2s", "--count", "0", "--visibility", "5s", "--", "sh", "-c",
						strings.ReplaceAll(gatedScript, "@HOLD@", holdQuote(w.hold()))}
				}
				holdLoop(lctx, x, "worker-"+q, holdMaxSpawns, argv, func(*Proc) {}, func(p *Proc) {
					o := holdCLIOutcome(p)
					if o == Failed && strings.Contains(holdLastLine(p.Stderr()), "no message ready") {
						o = OK // nothing within --wait (the gate closed, or the queue empty)
					}
					w.rep.Record("worker "+q, o)
				})
			}()
		}
	}
	return nil
}

func (w *GatedWorkload) hold() string { return filepath.Join(w.dir, "hold") }

// Release lets the first task end.
func (w *GatedWorkload) Release() { _ = os.Remove(w.hold()) }

// FirstHolder is the host whose worker holds ga's first task now, from
// its reservation record in etcd, and the reservation's create revision;
// nil if none holds it.
func (w *GatedWorkload) FirstHolder(ctx context.Context) (*Host, int64) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := w.etcd.Get(gctx, gatedPrefix("ga")+fmt.Sprintf("res/%020s", w.first))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, 0
	}
	var rec struct {
		Node string `json:"node"`
	}
	_ = json.Unmarshal(resp.Kvs[0].Value, &rec)
	for _, x := range w.hosts {
		if x.Name == rec.Node {
			return x, resp.Kvs[0].CreateRevision
		}
	}
	return nil, 0
}

// Push pushes payload (a fresh one when empty) to queue from x, and
// records it when the push answered an id.
func (w *GatedWorkload) Push(ctx context.Context, x *Host, queue, payload string, last bool) (string, Outcome) {
	w.mu.Lock()
	w.seq++
	if payload == "" {
		payload = fmt.Sprintf("m-%d-%s", w.seq, x.Name)
	} else {
		payload = fmt.Sprintf("%s-%d", payload, w.seq)
	}
	w.mu.Unlock()
	args := []string{"queue", "push", queue, payload, "-w", "json", "--call-timeout", "3s"}
	if last {
		args = append(args, "--last")
	}
	res := x.Run(ctx, args...)
	o := res.Outcome()
	id := ""
	if m := holdIDRE.FindStringSubmatch(res.Stdout); o == OK && m != nil {
		id = m[1]
		w.mu.Lock()
		w.pushed[queue] = append(w.pushed[queue], payload)
		w.mu.Unlock()
	} else if o == OK {
		o = Indeterminate
	}
	w.rep.Record("push "+queue, o)
	return id, o
}

// PushSome pushes n messages to each queue from random hosts (those on a
// faulted host may fail), and gc's --last one when big.
func (w *GatedWorkload) PushSome(ctx context.Context, n int, big bool) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < n && ctx.Err() == nil; i++ {
		for _, q := range []string{"gc", "ga"} {
			w.Push(ctx, w.hosts[r.Intn(len(w.hosts))], q, "", false)
		}
		if big && i == n/2 {
			w.Push(ctx, w.hosts[r.Intn(len(w.hosts))], "gc", "big", true)
		}
	}
}

// Pushed is how many of queue's pushes answered an id.
func (w *GatedWorkload) Pushed(queue string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pushed[queue])
}

// Drain waits (bounded by d) until both queues are empty.
func (w *GatedWorkload) Drain(ctx context.Context, d time.Duration) error {
	for _, q := range []string{"gc", "ga"} {
		if err := holdWaitNoKeys(ctx, w.etcd, gatedPrefix(q)+"msg/", d); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops the workers.
func (w *GatedWorkload) Stop() error {
	if w.cancel != nil {
		w.cancel()
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(time.Minute):
		return fmt.Errorf("worker loops did not stop within a minute")
	}
}

// Check replays both queues' history from etcd (after Drain and Stop).
func (w *GatedWorkload) Check(ctx context.Context) error {
	for _, q := range []string{"gc", "ga"} {
		// A key of no kind the queue knows marks the end of the history.
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		end, err := w.etcd.Put(gctx, gatedPrefix(q)+"zz-end", "")
		cancel()
		if err != nil {
			return err
		}
		evs, err := holdHistory(ctx, w.etcd, gatedPrefix(q), true, w.startRev+1, end.Header.Revision)
		if err != nil {
			return err
		}
		w.mu.Lock()
		pushed := append([]string{}, w.pushed[q]...)
		w.mu.Unlock()
		first := ""
		if q == "ga" {
			first = w.first
		}
		r := gatedReplay{queue: q, first: first, msgs: map[string]gatedMsg{}, res: map[string]bool{}, dead: map[string]bool{},
			bodies: map[string]string{}, acked: map[string]bool{}}
		if q == "gc" {
			r.count = GatedCount
		}
		for _, a := range r.run(evs) {
			w.rep.Anomaly("%s", a)
		}
		lost := 0
		ackedPayloads := map[string]bool{}
		for id := range r.acked {
			ackedPayloads[r.bodies[id]] = true
		}
		for _, p := range pushed {
			if !ackedPayloads[p] {
				lost++
				w.rep.Anomaly("queue %s: message %q was pushed (an id answered) and never acked", q, p)
			}
		}
		w.rep.Note("queue %s: %d pushes answered, %d messages acked, gate opened at revision %d, %d reservations, %d lost",
			q, len(pushed), len(r.acked), r.openRev, r.reserves, lost)
		if r.openRev == 0 {
			w.rep.Anomaly("queue %s: its gate never opened", q)
		}
	}
	return nil
}
