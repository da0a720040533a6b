package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/faults/check"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// QueueWorkload pushes messages with unique payloads to one queue and
// runs a worker on each of its hosts, `beacon queue reserve Q --ttl
// HoldTTL --wait 2s --count 0 --visibility 5s -- CMD`, restarted when it
// exits. CMD records the delivery (message id, receipt, payload from
// stdin, start time), acts one to three times 50–100 ms apart, records
// its end and exits 0, so the worker acks. A message whose payload starts
// with "long-" keeps its CMD acting while the workload's long flag exists
// (and ignoring SIGTERM once the ignore flag does): those are the holds
// the faults hit.
//
// Check judges it: the pushes, deliveries, crashes, the reservations
// that ended without an ack (replayed from etcd's history of the queue's
// keys) and the queue's final contents (read from etcd) go through
// check.CheckQueue — nothing lost, nothing unexpected, every redelivery
// explained; and no two deliveries of one message have overlapping acts
// (check.CheckExclusive, one name per message, receipts' revisions as
// tokens).
type QueueWorkload struct {
	h     *Harness
	rep   *Report
	Queue string
	dir   string
	hosts []*Host
	etcd  *clientv3.Client

	Visibility time.Duration
	startRev   int64
	// MaxSpawns bounds the worker starts per host (a soak raises it
	// with its duration: a worker that finds nothing ready exits).
	MaxSpawns int

	mu     sync.Mutex
	seq    int
	pushes []check.Push
	clis   map[int]*holdCLI
	ended  map[int]time.Time // CLI pid -> when it was reaped
	phases []*holdPhase
	stale  map[string]check.Delivery // receipt -> the test's stale ack of it
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewQueueWorkload prepares a queue workload; etcd is a client of the
// voters (holdsEtcd) for the checks.
func NewQueueWorkload(h *Harness, rep *Report, queue string, etcd *clientv3.Client) *QueueWorkload {
	return &QueueWorkload{h: h, rep: rep, Queue: queue, dir: filepath.Join(h.Dir(), "holds", "queue-"+queue),
		etcd: etcd, Visibility: 5 * time.Second, clis: map[int]*holdCLI{}, ended: map[int]time.Time{},
		stale: map[string]check.Delivery{}, MaxSpawns: holdMaxSpawns}
}

func (w *QueueWorkload) report() *Report              { return w.rep }
func (w *QueueWorkload) etcdClient() *clientv3.Client { return w.etcd }

func (w *QueueWorkload) recs(x *Host) string { return filepath.Join(w.dir, x.Name+".acts") }
func (w *QueueWorkload) prefix() string      { return "/beacon/queues/" + w.Queue + "/" }

const queueScript = `date() { command date "$@" || command date "$@" || command date "$@"; }
r=@RECS@; d=@DIR@; ig=0
p=$(cat)
id="$BEACON_QUEUE_MESSAGE_ID"
date "+%s%N $$ start $id $BEACON_QUEUE_RECEIPT $BEACON_QUEUE_DELIVERIES $PPID $p" >> "$r"
trap 'trap "" TERM; date "+%s%N $$ term $id" >> "$r"; exit 143' TERM
case "$p" in long-*) lg=1;; *) lg=0;; esac
n=$((1 + $$ % 3)); i=0
while [ $i -lt $n ] || { [ $lg = 1 ] && [ -e "$d/long" ] && [ $i -lt @MAX@ ]; }; do
	i=$((i + 1))
	if [ $lg = 1 ] && [ $ig = 0 ] && [ -e "$d/ignore" ]; then
		trap '' TERM; ig=1; date "+%s%N $$ ignore $id" >> "$r"
	fi
	date "+%s%N $$ act $id $i" >> "$r"
	sleep "0.$(printf %03d $((50 + ($$ * 7 + i * 37) % 50)))"
done
date "+%s%N $$ done $id" >> "$r"
`

func (w *QueueWorkload) argv(x *Host) []string {
	script := strings.NewReplacer("@RECS@", holdQuote(w.recs(x)), "@DIR@", holdQuote(w.dir), "@MAX@", strconv.Itoa(holdMaxActs)).Replace(queueScript)
	return []string{"beacon", "queue", "reserve", w.Queue, "--ttl", HoldTTL.String(), "--grace", HoldGrace.String(),
		"--wait", "2s", "--count", "0", "--visibility", w.Visibility.String(), "--", "sh", "-c", script}
}

// Start records the queue's revision and starts a worker loop on each
// host.
func (w *QueueWorkload) Start(ctx context.Context, hosts []*Host) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.etcd.Get(gctx, w.prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return fmt.Errorf("reading %s: %v", w.prefix(), err)
	}
	if resp.Count > 0 {
		return fmt.Errorf("queue %s is not new", w.Queue)
	}
	w.startRev = resp.Header.Revision
	w.hosts = hosts
	lctx, stop := context.WithCancel(context.Background())
	w.cancel = stop
	for _, x := range hosts {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			holdLoop(lctx, x, "worker", w.MaxSpawns, func() []string { return w.argv(x) },
				func(p *Proc) {
					w.mu.Lock()
					w.clis[p.Pid()] = &holdCLI{p: p, host: x}
					w.mu.Unlock()
				},
				func(p *Proc) {
					o := holdCLIOutcome(p)
					if o == Failed && strings.Contains(holdLastLine(p.Stderr()), "no message ready") {
						o = OK // the queue stayed empty for --wait: nothing to do
					}
					w.rep.Record("worker cli", o)
					w.mu.Lock()
					w.ended[p.Pid()] = time.Now()
					w.mu.Unlock()
				})
		}()
	}
	return nil
}

// Push pushes one message from x with a fresh unique payload ("long-N"
// for a long one) and records the attempt.
func (w *QueueWorkload) Push(ctx context.Context, x *Host, long bool) (string, Outcome) {
	w.mu.Lock()
	w.seq++
	payload := fmt.Sprintf("m-%d-%s", w.seq, x.Name)
	if long {
		payload = fmt.Sprintf("long-%d-%s", w.seq, x.Name)
	}
	w.mu.Unlock()
	res := x.Run(ctx, "queue", "push", w.Queue, payload, "-w", "json", "--call-timeout", "3s")
	o := res.Outcome()
	p := check.Push{Client: x.Name, Payload: payload, Invoke: res.Start.UnixNano(), Return: res.End.UnixNano(), Outcome: holdOutcome(o)}
	if o == OK {
		if m := holdIDRE.FindStringSubmatch(res.Stdout); m != nil {
			p.ID = m[1]
		} else {
			p.Outcome = check.Indeterminate // answered, but not with an id we can read
			o = Indeterminate
		}
	}
	w.rep.Record("push", o)
	if o == Failed {
		// A failed push is judged as never applied: keep its error, so an
		// "unexpected message" names what the CLI said.
		w.rep.Note("push %s from %s failed (exit %d, %v): %s", payload, x.Name, res.Code, res.Err, holdLastLine(res.Stderr))
	}
	w.mu.Lock()
	w.pushes = append(w.pushes, p)
	w.mu.Unlock()
	return payload, o
}

var holdIDRE = regexp.MustCompile(`"id":\s*"([^"]+)"`)

func holdOutcome(o Outcome) check.Outcome {
	return [...]check.Outcome{check.OK, check.Failed, check.Indeterminate}[o]
}

func (w *QueueWorkload) prepare(ctx context.Context, ignore bool) {
	holdTouch(filepath.Join(w.dir, "long"))
	if ignore {
		holdTouch(filepath.Join(w.dir, "ignore"))
	}
	// A long message, pushed from a host that is up, until one is taken.
	for _, x := range w.hosts {
		if up, _ := x.UpState(); !up {
			continue
		}
		if _, o := w.Push(ctx, x, true); o != Failed {
			return
		}
	}
}

func (w *QueueWorkload) release() {
	_ = os.Remove(filepath.Join(w.dir, "long"))
	_ = os.Remove(filepath.Join(w.dir, "ignore"))
}

// SetFlags turns long holds and SIGTERM-ignoring on or off (the soak).
func (w *QueueWorkload) SetFlags(long, ignore bool) {
	holdSetFlag(filepath.Join(w.dir, "long"), long)
	holdSetFlag(filepath.Join(w.dir, "ignore"), ignore)
}

// during pushes a few ordinary messages from random hosts while a fault
// is on (those from the faulted host may be indeterminate).
func (w *QueueWorkload) during(ctx context.Context, t *holdTarget) {
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 3 && ctx.Err() == nil; i++ {
		x := w.hosts[r.Intn(len(w.hosts))]
		if i == 0 && t != nil {
			x = t.Host
		}
		w.Push(ctx, x, false)
		holdSleep(ctx, 200*time.Millisecond)
	}
}

// holdDelivery is one CMD run of the queue workload.
type holdDelivery struct {
	Host       string
	PID, PPID  int
	Msg        string
	Receipt    string
	Rev        int64 // the receipt's revision
	Payload    string
	Start      int64
	End        int64 // done or term line; 0 if neither
	Done       bool
	Last       int64
	Acts       int
	Ignored    bool
	Recs       []holdRec
	deliveries int
}

func (d *holdDelivery) String() string {
	return fmt.Sprintf("%s pid %d message %s receipt %s", d.Host, d.PID, d.Msg, d.Receipt)
}

func (w *QueueWorkload) deliveries() ([]*holdDelivery, error) {
	var all []*holdDelivery
	for _, x := range w.hosts {
		recs, err := readHoldRecs(w.recs(x))
		if err != nil {
			return nil, err
		}
		cur := map[int]*holdDelivery{}
		for _, rec := range recs {
			if rec.Kind == "start" {
				if len(rec.Args) != 5 {
					return nil, fmt.Errorf("%s: start record with %d fields", rec.Src, len(rec.Args))
				}
				d := &holdDelivery{Host: x.Name, PID: rec.PID, Msg: rec.Args[0], Receipt: rec.Args[1], Payload: rec.Args[4],
					Start: rec.T, Last: rec.T, Recs: []holdRec{rec}}
				d.deliveries, _ = strconv.Atoi(rec.Args[2])
				d.PPID, _ = strconv.Atoi(rec.Args[3])
				if i := strings.LastIndexByte(d.Receipt, '/'); i >= 0 {
					d.Rev, _ = strconv.ParseInt(d.Receipt[i+1:], 10, 64)
				}
				cur[rec.PID] = d
				all = append(all, d)
				continue
			}
			d := cur[rec.PID]
			if d == nil {
				return nil, fmt.Errorf("%s: a record of pid %d without a start before it", rec.Src, rec.PID)
			}
			d.Recs = append(d.Recs, rec)
			d.Last = max(d.Last, rec.T)
			switch rec.Kind {
			case "act":
				d.Acts++
			case "ignore":
				d.Ignored = true
			case "done":
				d.Done, d.End = true, rec.T
			case "term":
				d.End = rec.T
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Start < all[j].Start })
	return all, nil
}

// holder: the delivery of a long message acting now.
func (w *QueueWorkload) holder(ignore bool) (*holdTarget, bool) {
	ds, err := w.deliveries()
	if err != nil {
		return nil, false
	}
	now := time.Now().UnixNano()
	var best *holdTarget
	for _, d := range ds {
		if !strings.HasPrefix(d.Payload, "long-") || d.End != 0 || d.Acts < 2 || now-d.Last > int64(time.Second) || !holdAlive(d.PID) {
			continue
		}
		w.mu.Lock()
		cli := w.clis[holdPPid(d.PID)]
		w.mu.Unlock()
		if cli == nil || cli.p.Exited() || cli.host.Name != d.Host {
			continue
		}
		if ignore != holdIgnoresTerm(d.PID) {
			continue
		}
		if best == nil || d.Start > best.Enter {
			best = &holdTarget{Host: cli.host, CLI: cli.p, PID: d.PID, Token: d.Rev, Msg: d.Msg, Enter: d.Start}
		}
	}
	return best, best != nil
}

// tookOver: the message went to another worker, whose CMD has acted.
func (w *QueueWorkload) tookOver(t *holdTarget) bool {
	ds, err := w.deliveries()
	if err != nil {
		return false
	}
	for _, d := range ds {
		if d.Msg == t.Msg && d.Start > t.Enter && d.PID != t.PID && d.Acts >= 1 {
			return true
		}
	}
	return false
}

// busy: a delivery that started before t still runs.
func (w *QueueWorkload) busy(before int64) bool {
	ds, err := w.deliveries()
	if err != nil {
		return false
	}
	for _, d := range ds {
		if d.Start < before && d.End == 0 && holdCMDRuns(&w.mu, w.clis, d.PID, d.Host) {
			return true
		}
	}
	return false
}

// afterPhase: once the message is delivered again, the phase's
// reservation has ended for good, so an ack of its receipt — sent here,
// from its host — must fail.
func (w *QueueWorkload) afterPhase(ctx context.Context, ph *holdPhase) {
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) && ctx.Err() == nil {
		ds, err := w.deliveries()
		if err == nil {
			var old *holdDelivery
			for _, d := range ds {
				if d.Host == ph.Target.Host.Name && d.PID == ph.Target.PID && d.Msg == ph.Target.Msg {
					old = d
				}
			}
			for _, d := range ds {
				if old != nil && d.Msg == old.Msg && d.Start > old.Start {
					w.staleAck(ctx, ph, old)
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.rep.Anomaly("%s phase: message %s not delivered again within 20s of the heal", ph.Kind, ph.Target.Msg)
}

func (w *QueueWorkload) staleAck(ctx context.Context, ph *holdPhase, old *holdDelivery) {
	res := ph.Target.Host.Run(ctx, "queue", "ack", old.Receipt, "--call-timeout", "3s")
	o := res.Outcome()
	ack := check.Delivery{End: res.Start.UnixNano(), AckResult: check.Indeterminate}
	switch {
	case o == OK:
		ack.AckResult = check.OK
		w.rep.Anomaly("%s phase: an ack of the ended reservation %s (%s) was accepted", ph.Kind, old.Receipt, old)
	case strings.Contains(res.Stderr, "failed precondition") || strings.Contains(strings.ToLower(res.Stderr), "stale"):
		ack.AckResult = check.Failed
	default:
		o = Indeterminate
		w.rep.Note("%s phase: the stale ack of %s: %s", ph.Kind, old.Receipt, res.Line())
	}
	w.rep.Record("stale ack", o)
	w.mu.Lock()
	w.stale[old.Receipt] = ack
	w.mu.Unlock()
}

// RunPhase runs one targeted fault phase on this workload.
func (w *QueueWorkload) RunPhase(ctx context.Context, t *testing.T, kind string, ignore bool, voters, all []*Host) {
	t.Helper()
	if ph := runHoldPhase(ctx, t, w.h, w, kind, ignore, voters, all); ph != nil {
		w.mu.Lock()
		w.phases = append(w.phases, ph)
		w.mu.Unlock()
	}
}

// Drain waits (bounded by d) until no message is left ready or in flight.
func (w *QueueWorkload) Drain(ctx context.Context, d time.Duration) error {
	return holdWaitNoKeys(ctx, w.etcd, w.prefix()+"msg/", d)
}

// Stop stops the workers and waits for their sessions' reservations to
// be gone.
func (w *QueueWorkload) Stop(ctx context.Context) error {
	w.release()
	if w.cancel != nil {
		w.cancel()
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		return errors.New("worker loops did not stop within a minute")
	}
	return holdWaitNoKeys(ctx, w.etcd, w.prefix()+"res/", 3*HoldTTL+10*time.Second)
}

// Check judges the records (after Stop).
func (w *QueueWorkload) Check(ctx context.Context, t *testing.T, from *Host) error {
	t.Helper()
	// The last push marks the end of the history to replay.
	if _, o := w.Push(ctx, from, false); o != OK {
		return fmt.Errorf("the closing push failed (%s)", o)
	}
	ds, err := w.deliveries()
	if err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	fin, err := w.etcd.Get(gctx, w.prefix(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("reading the final queue: %v", err)
	}
	var hist check.QueueHistory
	w.mu.Lock()
	hist.Pushes = append(hist.Pushes, w.pushes...)
	clis := map[int]*holdCLI{}
	for k, v := range w.clis {
		clis[k] = v
	}
	ended := map[int]time.Time{}
	for k, v := range w.ended {
		ended[k] = v
	}
	phases := append([]*holdPhase{}, w.phases...)
	staleAcks := map[string]check.Delivery{}
	for k, v := range w.stale {
		staleAcks[k] = v
	}
	w.mu.Unlock()

	// Final contents.
	msgs, res, dead, bodies := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]string{}
	var maxRev int64
	for _, kv := range fin.Kvs {
		maxRev = max(maxRev, kv.ModRevision)
		rest := strings.TrimPrefix(string(kv.Key), w.prefix())
		kind, seq, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil {
			continue
		}
		id := strconv.FormatUint(n, 10)
		switch kind {
		case "msg":
			msgs[id] = true
		case "res":
			res[id] = true
		case "dead":
			dead[id] = true
		case "body":
			bodies[id] = string(kv.Value)
		}
	}
	for _, id := range holdSortedKeys(msgs) {
		m := check.Message{ID: id, Payload: bodies[id]}
		if res[id] {
			hist.Final.InFlight = append(hist.Final.InFlight, m)
		} else {
			hist.Final.Ready = append(hist.Final.Ready, m)
		}
	}
	for _, id := range holdSortedKeys(dead) {
		hist.Final.Dead = append(hist.Final.Dead, check.Message{ID: id, Payload: bodies[id]})
	}
	w.rep.Note("final queue (etcd): %d ready (the closing push among them), %d in flight, %d dead", len(hist.Final.Ready), len(hist.Final.InFlight), len(hist.Final.Dead))
	w.crossCheck(ctx, from, len(hist.Final.Ready), len(hist.Final.InFlight), len(hist.Final.Dead))

	// Deliveries, with their acks as their workers saw them.
	nextByCLI := map[*holdDelivery]bool{}
	byCLI := map[int][]*holdDelivery{}
	for _, d := range ds {
		byCLI[d.PPID] = append(byCLI[d.PPID], d)
	}
	for _, list := range byCLI {
		for i := 0; i+1 < len(list); i++ {
			nextByCLI[list[i]] = true
		}
	}
	now := time.Now().UnixNano()
	for _, d := range ds {
		qd := check.Delivery{Worker: fmt.Sprintf("%s/%d", d.Host, d.PPID), Message: d.Msg, Payload: d.Payload,
			Reservation: holdReservationID(d.Receipt), Start: d.Start}
		if d.Done {
			qd.Ack, qd.End = check.Acked, d.End
			qd.AckResult = check.Indeterminate
			cli := clis[d.PPID]
			switch {
			case nextByCLI[d]:
				qd.AckResult = check.OK // the worker went on to reserve again: the ack returned
			case cli != nil && cli.p.Exited() && cli.p.ExitCode() >= 0:
				line := holdLastLine(cli.p.Stderr())
				switch {
				case !strings.Contains(line, "message "+d.Msg+" of queue"):
					qd.AckResult = check.OK // its error (if any) is a later reserve's
				case strings.Contains(line, "failed precondition") || strings.Contains(line, "stale"):
					qd.AckResult = check.Failed
				}
			}
			w.rep.Record("ack", map[check.Outcome]Outcome{check.OK: OK, check.Failed: Failed, check.Indeterminate: Indeterminate}[qd.AckResult])
			w.rep.Record("delivery", OK)
		} else {
			w.rep.Record("delivery", Failed)
			if st, ok := staleAcks[d.Receipt]; ok {
				qd.Ack, qd.End, qd.AckResult = check.Acked, st.End, st.AckResult
			}
		}
		hist.Deliveries = append(hist.Deliveries, qd)
	}
	for pid, c := range clis {
		if c.p.Exited() && c.p.ExitCode() != 0 && !ended[pid].IsZero() && !strings.Contains(holdLastLine(c.p.Stderr()), "no message ready") {
			hist.Crashes = append(hist.Crashes, check.Crash{Worker: fmt.Sprintf("%s/%d", c.host.Name, pid), At: ended[pid].UnixNano()})
		}
	}

	// Reservations that ended without an ack, from etcd's history: a res
	// key deleted in a revision that does not also delete its message.
	// It was gone by the start of the message's next delivery under a
	// later reservation (that needs the key gone), or else by now.
	evs, err := holdHistory(ctx, w.etcd, w.prefix(), true, w.startRev+1, maxRev)
	if err != nil {
		return fmt.Errorf("replaying the queue's history: %v", err)
	}
	msgDeleted := map[string]bool{} // "rev/id"
	for _, ev := range evs {
		if ev.Type == clientv3.EventTypeDelete {
			if kind, id, ok := w.keyOf(ev.Kv.Key); ok && kind == "msg" {
				msgDeleted[fmt.Sprintf("%d/%s", ev.Kv.ModRevision, id)] = true
			}
		}
	}
	ackedRevs := 0
	for _, ev := range evs {
		kind, id, ok := w.keyOf(ev.Kv.Key)
		if !ok || kind != "res" || ev.Type != clientv3.EventTypeDelete || ev.PrevKv == nil {
			continue
		}
		if msgDeleted[fmt.Sprintf("%d/%s", ev.Kv.ModRevision, id)] {
			ackedRevs++
			continue
		}
		at := now
		for _, d := range ds {
			if d.Msg == id && d.Rev > ev.Kv.ModRevision && d.Start < at {
				at = d.Start
			}
		}
		hist.Expiries = append(hist.Expiries, check.Expiry{Reservation: fmt.Sprintf("%s/%s/%d", w.Queue, id, ev.PrevKv.CreateRevision), At: at})
	}
	w.rep.Note("%d pushes, %d deliveries, %d acks applied, %d reservations ended otherwise, %d worker crashes",
		len(hist.Pushes), len(hist.Deliveries), ackedRevs, len(hist.Expiries), len(hist.Crashes))
	anoms, err := check.CheckQueue(hist)
	if err != nil {
		return err
	}
	var texts []string
	for _, a := range anoms {
		w.rep.Anomaly("%s", a)
		texts = append(texts, a.Text)
	}

	// No two deliveries of one message act at once.
	events := holdDeliveryEvents(ds)
	xanoms, err := check.CheckExclusive(events, 1)
	if err != nil {
		return err
	}
	for _, a := range xanoms {
		w.rep.Anomaly("%s", a)
		texts = append(texts, a.Text)
	}

	// The phases.
	for _, ph := range phases {
		var old, next *holdDelivery
		for _, d := range ds {
			if d.Host == ph.Target.Host.Name && d.PID == ph.Target.PID && d.Msg == ph.Target.Msg {
				old = d
			}
		}
		if old == nil {
			w.rep.Anomaly("%s phase: the holder %s is not in the records", ph.Kind, ph.Target)
			continue
		}
		for _, d := range ds {
			if d != old && d.Msg == old.Msg && d.Start > old.Start && (next == nil || d.Start < next.Start) {
				next = d
			}
		}
		var nextFirst int64
		nextName := ""
		if next != nil {
			nextFirst, nextName = next.Start, next.String()
		}
		judgePhase(w.rep, ph, "delivery", old.Last, old.End != 0, old.Ignored, nextName, nextFirst)
		texts = append(texts, old.String())
	}
	if len(w.rep.Anomalies()) > 0 {
		w.evidence(t, ds, clis, texts)
	}
	return nil
}

// holdDeliveryEvents are the deliveries as intervals, one name per message,
// the receipt's revision as token: from the start to the done (or term)
// line, or to the last line of a CMD killed before it wrote either.
func holdDeliveryEvents(ds []*holdDelivery) []check.Event {
	var events []check.Event
	for _, d := range ds {
		name := "message " + d.Msg
		events = append(events, check.Event{Time: d.Start, Kind: check.Enter, Host: d.Host, PID: d.PID, PPID: d.PPID, Token: d.Rev, Name: name})
		if d.End != 0 && d.End == d.Last {
			events = append(events, check.Event{Time: d.End, Kind: check.Exit, Host: d.Host, PID: d.PID, PPID: d.PPID, Token: d.Rev, Name: name})
		}
	}
	for _, d := range ds {
		if d.End == 0 || d.End != d.Last {
			events = append(events, check.Event{Time: d.Last, Kind: check.Dead, Host: d.Host, PID: d.PID, Token: d.Rev, Name: "message " + d.Msg})
		}
	}
	return events
}

func (w *QueueWorkload) keyOf(key []byte) (kind, id string, ok bool) {
	rest, ok := strings.CutPrefix(string(key), w.prefix())
	if !ok {
		return "", "", false
	}
	kind, seq, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return "", "", false
	}
	return kind, strconv.FormatUint(n, 10), true
}

// crossCheck compares `beacon queue stats` and `beacon queue dead` on a
// host with what etcd holds; they must agree once the agent's view has
// caught up (polled, bounded).
func (w *QueueWorkload) crossCheck(ctx context.Context, x *Host, ready, inflight, dead int) {
	want := fmt.Sprintf("ready %d, in flight %d, dead %d", ready, inflight, dead)
	num := func(s, field string) int {
		m := regexp.MustCompile(`"` + field + `":\s*"?(\d+)`).FindStringSubmatch(s)
		if m == nil {
			return -1
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	var got string
	end := time.Now().Add(10 * time.Second)
	for {
		st := x.Run(ctx, "queue", "stats", w.Queue, "-w", "json", "--call-timeout", "3s")
		dl := x.Run(ctx, "queue", "dead", w.Queue, "-w", "json", "--call-timeout", "3s")
		nDead := strings.Count(dl.Stdout, `"dead_reason"`)
		got = fmt.Sprintf("ready %d, in flight %d, dead %d (dead listed %d)", num(st.Stdout, "ready")+num(st.Stdout, "delayed"), num(st.Stdout, "in_flight"), num(st.Stdout, "dead"), nDead)
		if st.OK() && dl.OK() && got == want+fmt.Sprintf(" (dead listed %d)", dead) {
			w.rep.Note("beacon queue stats/dead on %s agree: %s", x, want)
			return
		}
		if time.Now().After(end) {
			w.rep.Anomaly("beacon queue stats/dead on %s say %s; etcd holds %s (%s %s)", x, got, want, st.Line(), dl.Line())
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (w *QueueWorkload) evidence(t *testing.T, ds []*holdDelivery, clis map[int]*holdCLI, texts []string) {
	t.Helper()
	pids := holdAnomalyPids(texts)
	msgRE := regexp.MustCompile(`message (\d+)`)
	msgs := map[string]bool{}
	for _, s := range texts {
		for _, m := range msgRE.FindAllStringSubmatch(s, -1) {
			msgs[m[1]] = true
		}
	}
	for _, d := range ds {
		if !holdHasInt(pids[d.Host], d.PID) && !msgs[d.Msg] {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "--- delivery %s, payload %q, delivery #%d:\n", d, d.Payload, d.deliveries)
		holdWriteRecs(&b, d.Recs, "act")
		if cli := clis[d.PPID]; cli != nil {
			fmt.Fprintf(&b, "  its worker %s pid %d (exit %d), stderr:\n%s\n", cli.p.Label, cli.p.Pid(), cli.p.ExitCode(), tail(cli.p.Stderr(), 15))
		}
		t.Log(b.String())
	}
}

// holdReservationID names a reservation as the queue's history can:
// QUEUE/SEQ/REV. A receipt is QUEUE/SEQ/KEY/REV, KEY its secret, of which
// etcd keeps only a hash, so an expiry read from etcd cannot name it.
func holdReservationID(receipt string) string {
	if p := strings.Split(receipt, "/"); len(p) == 4 {
		return p[0] + "/" + p[1] + "/" + p[3]
	}
	return receipt
}
