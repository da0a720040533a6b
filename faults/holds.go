package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Holds workloads (issue 8): `beacon lock`, `beacon elect` and the queue
// worker `beacon queue reserve … -- CMD`, run in loops on every host of a
// fleet while faults hit the holder, then judged from what CMD actually
// did. Every CMD is a shell script that writes what it does, one line per
// act, to a file of its host (one write(2) per line, O_APPEND): a CMD that
// SIGKILL stopped has written nothing after its last act, so its interval
// runs from its enter to the last line it managed to write — never to a
// guessed time of death.
//
// Records of a workload live in <harness dir>/holds/<workload>/:
//
//	<host>.jsonl   enter/exit events of CMD (check.ShellAppend)
//	<host>.acts    "<ns> <pid> <kind> <args…>" lines: key, act, put, tick,
//	               ignore, term; start, act, done (queue)
//	out/<value>    a fenced put's stdout and stderr
//	long, ignore   flag files: while "long" exists a CMD keeps acting (up
//	               to holdMaxActs); once "ignore" exists a CMD ignores SIGTERM
//	               (trap '' TERM), so only SIGKILL stops it

// HoldTTL is the --ttl of every holder CLI in the holds workloads, and
// HoldGrace its --grace: CMD gets SIGTERM at deadline − grace and SIGKILL
// at the deadline.
const (
	HoldTTL   = 2 * time.Second
	HoldGrace = 500 * time.Millisecond
)

const (
	holdMaxActs      = 150 // a long-holding CMD stops after this many acts (~25 s)
	holdMaxSpawns    = 400 // CLI starts per host and workload (MaxSpawns' default)
	holdHolderWait   = 20 * time.Second
	holdMaxFaultHold = 20 * time.Second
	holdCLIStop      = 5 * time.Second
)

// --- records ---

// holdRec is one line of an .acts file.
type holdRec struct {
	T    int64
	PID  int
	Kind string
	Args []string
	Src  string // file:line
}

func (r holdRec) String() string {
	return fmt.Sprintf("%s pid %d %s %s (%s)", holdStamp(r.T), r.PID, r.Kind, strings.Join(r.Args, " "), r.Src)
}

// readHoldRecs reads an .acts file. A last line without its newline is a
// write cut short and is dropped; any other bad line is an error.
func readHoldRecs(path string) ([]holdRec, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []holdRec
	lines := strings.SplitAfter(string(b), "\n")
	for i, l := range lines {
		if l == "" {
			continue
		}
		complete := strings.HasSuffix(l, "\n")
		f := strings.Fields(l)
		var t int64
		var pid int
		var e1, e2 error
		if len(f) >= 3 {
			t, e1 = strconv.ParseInt(f[0], 10, 64)
			pid, e2 = strconv.Atoi(f[1])
		}
		if len(f) < 3 || e1 != nil || e2 != nil || t <= 0 {
			if !complete {
				continue
			}
			return nil, fmt.Errorf("%s:%d: bad record %q", path, i+1, strings.TrimSpace(l))
		}
		recs = append(recs, holdRec{T: t, PID: pid, Kind: f[2], Args: f[3:], Src: fmt.Sprintf("%s:%d", filepath.Base(path), i+1)})
	}
	return recs, nil
}

func holdStamp(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }

// holdQuote quotes s for sh.
func holdQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// --- processes ---

// holdAlive says whether pid runs (not gone, not a zombie).
// holdCMDRuns: CMD pid still runs, under a CLI of this workload on host.
func holdCMDRuns(mu *sync.Mutex, clis map[int]*holdCLI, pid int, host string) bool {
	if !holdAlive(pid) {
		return false
	}
	mu.Lock()
	cli := clis[holdPPid(pid)]
	mu.Unlock()
	return cli != nil && cli.host.Name == host
}

func holdAlive(pid int) bool {
	st := ProcState(pid)
	return st != 0 && st != 'Z' && st != 'X'
}

// holdPPid is the parent pid of pid, 0 if gone.
func holdPPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// holdIgnoresTerm says whether pid has SIGTERM ignored (SigIgn in
// /proc/PID/status): such a CMD stops only on SIGKILL.
func holdIgnoresTerm(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && m&(1<<(15-1)) != 0
		}
	}
	return false
}

// holdCLI is one holder CLI process a workload started.
type holdCLI struct {
	p    *Proc
	host *Host
}

// holdLoop runs the CLI built by argv on x again and again until ctx
// ends (then it stops the running one with SIGTERM, SIGKILL after
// holdCLIStop), at most holdMaxSpawns times. started and ended are told
// of each process.
func holdLoop(ctx context.Context, x *Host, label string, spawns int, argv func() []string, started func(*Proc), ended func(*Proc)) {
	backoff := 100 * time.Millisecond
	for n := 0; n < spawns && ctx.Err() == nil; n++ {
		p, err := x.SpawnCmd(context.Background(), Cmd{Argv: argv(), Label: label})
		if err != nil {
			if !holdSleep(ctx, time.Second) {
				return
			}
			continue
		}
		started(p)
		select {
		case <-p.Done():
		case <-ctx.Done():
			_ = p.Stop(holdCLIStop)
		}
		wctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		_ = p.Wait(wctx)
		cancel()
		ended(p)
		if p.ExitCode() != 0 && p.ended.Sub(p.Started()) < time.Second {
			if !holdSleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 2*time.Second)
		} else {
			backoff = 100 * time.Millisecond
		}
	}
}

func holdSleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// holdCLIOutcome classifies a holder CLI's end: exit 0 ok, another code
// failed, killed by a signal indeterminate.
func holdCLIOutcome(p *Proc) Outcome {
	switch c := p.ExitCode(); {
	case c == 0:
		return OK
	case c > 0:
		return Failed
	default:
		return Indeterminate
	}
}

// --- etcd, read from inside the hosts ---

// holdsEtcd is an etcd client of the voters' client URLs whose
// connections start inside each voter's namespace: the checkers read the
// register, the queue's keys and their history with it, beside beacon.
func holdsEtcd(voters []*Host) (*clientv3.Client, error) {
	byAddr := map[string]*Host{}
	var eps []string
	for _, x := range voters {
		byAddr[x.IP+":2379"] = x
		eps = append(eps, x.ClientURL)
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			x := byAddr[addr]
			if x == nil {
				return nil, fmt.Errorf("no fault host has %s", addr)
			}
			return x.DialContext(ctx, "tcp", addr)
		})},
	})
}

// holdHistory replays the events of key (a prefix when prefix) from
// revision from on, until it has seen an event at revision until or
// later; bounded by ctx.
func holdHistory(ctx context.Context, cli *clientv3.Client, key string, prefix bool, from, until int64) ([]*clientv3.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRev(from), clientv3.WithPrevKV()}
	if prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	var evs []*clientv3.Event
	for resp := range cli.Watch(clientv3.WithRequireLeader(ctx), key, opts...) {
		if err := resp.Err(); err != nil {
			return evs, err
		}
		for _, ev := range resp.Events {
			evs = append(evs, ev)
			if ev.Kv.ModRevision >= until {
				return evs, nil
			}
		}
	}
	return evs, fmt.Errorf("watch of %s from %d ended before revision %d: %v", key, from, until, ctx.Err())
}

// holdCount counts the keys under prefix (linearizable).
func holdCount(ctx context.Context, cli *clientv3.Client, prefix string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

// holdWaitNoKeys polls until nothing is left under prefix (the holders'
// keys, once every CLI is gone), within d.
func holdWaitNoKeys(ctx context.Context, cli *clientv3.Client, prefix string, d time.Duration) error {
	end := time.Now().Add(d)
	for {
		n, err := holdCount(ctx, cli, prefix)
		if err == nil && n == 0 {
			return nil
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("%s: %d keys left after %s (%v)", prefix, n, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- targeted faults ---

// holdTarget is a holder found in the records: whose CMD is inside its
// interval, acting, right now.
type holdTarget struct {
	Host  *Host
	CLI   *Proc
	PID   int    // CMD's pid
	Token int64  // lock token, leader rev, or the receipt's revision
	Msg   string // queue: the message id
	Enter int64
}

func (t *holdTarget) String() string {
	s := fmt.Sprintf("%s CMD pid %d (CLI %s pid %d)", t.Host.Name, t.PID, t.CLI.Label, t.CLI.Pid())
	if t.Msg != "" {
		s += " message " + t.Msg
	}
	if t.Token != 0 {
		s += fmt.Sprintf(" token %d", t.Token)
	}
	return s
}

// holdsWorkload is what the fault phases need of a workload.
type holdsWorkload interface {
	// prepare makes the next holder hold long (and ignore SIGTERM).
	prepare(ctx context.Context, ignore bool)
	// release ends the long holds.
	release()
	// holder is the current holder, if one acts now (and ignores
	// SIGTERM when ignore).
	holder(ignore bool) (*holdTarget, bool)
	// tookOver says whether another holder has acted since t entered.
	tookOver(t *holdTarget) bool
	// busy says whether a holder that entered before t still runs.
	busy(before int64) bool
	// afterPhase runs once the phase's holder is gone and another has
	// entered: the superseded holder's stale write (or ack) must fail.
	afterPhase(ctx context.Context, ph *holdPhase)
	// during runs while a fault is on (pushes, for the queue).
	during(ctx context.Context, t *holdTarget)
	// report is the workload's report.
	report() *Report
	// etcdClient reads the cluster beside beacon.
	etcdClient() *clientv3.Client
}

// holdPhase is one targeted fault and what it must show.
type holdPhase struct {
	Kind   string // isolate, pause-agent, pause-cli, pause-host, kill-agent, split
	Fault  string
	Target *holdTarget
	Ignore bool // the holder ignored SIGTERM (checked in /proc before injecting)

	Start, Healed time.Time
	// NeedTakeover: a new holder must have acted while the fault was on.
	NeedTakeover, TookOver bool
	// Bounded: the old CMD's last act must come within Bound of the
	// fault's start: its deadline is at most its last confirmation's
	// question + TTL, and no confirmation can come after the cut — unless
	// the etcd leader is on the cut-off side (Leader), which renews leases
	// until CheckQuorum makes it step down, up to two election timeouts
	// after the cut (the majority's new leader, elected no sooner than one
	// election timeout after the cut, extends every lease by another).
	Bounded bool
	Bound   time.Duration
	Leader  string // the etcd leader when the fault began ("?" unknown)
}

// holdElectionTimeout is the embedded members' election timeout (etcd's
// default, 10 ticks of 100 ms).
const holdElectionTimeout = time.Second

// holdLeader names the voter that leads, "?" if none answers.
func holdLeader(ctx context.Context, cli *clientv3.Client, voters []*Host) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ids := map[uint64]string{}
	var lead uint64
	for _, x := range voters {
		st, err := cli.Status(ctx, x.ClientURL)
		if err != nil {
			continue
		}
		ids[st.Header.MemberId] = x.Name
		if st.Leader != 0 {
			lead = st.Leader
		}
	}
	if name, ok := ids[lead]; ok {
		return name
	}
	return "?"
}

// The fault kinds of a phase, in the order the tests run them.
var holdFaultKinds = []string{"isolate", "pause-agent", "pause-cli", "pause-host", "kill-agent", "split"}

// holdFault builds the fault of a kind against t: the fault, its
// shortest hold, whether a takeover must happen during it, and whether
// the old CMD's last act is bounded (holdPhase.Bound after the start).
func holdFault(kind string, t *holdTarget, voters []*Host, all []*Host) (f Fault, minHold time.Duration, takeover, bounded bool) {
	switch kind {
	case "isolate":
		return Isolate(t.Host), 3 * HoldTTL, true, true
	case "pause-agent":
		return PauseAgent(t.Host), HoldTTL + 500*time.Millisecond, true, true
	case "pause-cli-long":
		// Longer than a queue worker's visibility (5s): the worker cannot
		// extend its reservation meanwhile, while its CMD runs on.
		return PauseProc(t.CLI), 6 * time.Second, false, false
	case "pause-cli+isolate":
		// Two faults at once: the holding CLI paused and its host cut
		// off. The lease ends on the majority after the TTL; whatever
		// stops CMD must not be the paused CLI alone.
		return holdBoth(PauseProc(t.CLI), Isolate(t.Host)), 3 * HoldTTL, true, true
	case "pause-cli":
		// The agent keeps the session's lease alive: nobody else may be
		// granted meanwhile, and on resume the CLI finds its deadline
		// passed and kills CMD at once.
		// (For a queue worker, the pause stays within the visibility left
		// at its start: at least 5s - 5s/3.)
		return PauseProc(t.CLI), HoldTTL + 500*time.Millisecond, false, false
	case "pause-host":
		return PauseHost(t.Host), HoldTTL + 500*time.Millisecond, true, true
	case "kill-agent":
		return KillAgent(t.Host), HoldTTL + 500*time.Millisecond, true, true
	case "split":
		return Split(holdSide(kind, t, voters, all)...), HoldTTL + time.Second, true, true
	}
	panic("unknown hold fault kind " + kind)
}

// holdBoth is two faults injected together (in order) and healed
// together (in reverse).
func holdBoth(a, b Fault) Fault { return &holdBothFault{a, b} }

type holdBothFault struct{ a, b Fault }

func (f *holdBothFault) String() string { return f.a.String() + " + " + f.b.String() }

func (f *holdBothFault) Inject(ctx context.Context) error {
	if err := f.a.Inject(ctx); err != nil {
		return err
	}
	if err := f.b.Inject(ctx); err != nil {
		return errors.Join(err, f.a.Heal(ctx))
	}
	return nil
}

func (f *holdBothFault) Heal(ctx context.Context) error {
	return errors.Join(f.b.Heal(ctx), f.a.Heal(ctx))
}

// holdSide is the side of a network fault of kind that holds the
// target: its host, and in a split a host of the other role (a voter's
// mate is a proxy, a proxy's a voter), so that the side is a minority.
func holdSide(kind string, t *holdTarget, voters, all []*Host) []*Host {
	side := []*Host{t.Host}
	if kind == "split" {
		isVoter := contains(voters, t.Host)
		for _, x := range all {
			if x != t.Host && contains(voters, x) != isVoter {
				return append(side, x)
			}
		}
	}
	return side
}

// runHoldPhase finds w's holder, hits it with a fault of kind, holds the
// fault for at least its shortest hold and until a new holder has acted
// when one must, heals, and waits for the old CMD to be gone. Problems
// of the system are anomalies of w's report; a phase that could not be
// set up fails the test.
func runHoldPhase(ctx context.Context, t interface {
	Helper()
	Errorf(string, ...any)
}, h *Harness, w holdsWorkload, kind string, ignore bool, voters, all []*Host) *holdPhase {
	t.Helper()
	rep := w.report()
	w.prepare(ctx, ignore)
	defer func() {
		// End the long holds, and let every holder of this phase finish
		// before the next phase sets the flags again.
		w.release()
		released := time.Now().UnixNano()
		end := time.Now().Add(15 * time.Second)
		for w.busy(released) && time.Now().Before(end) {
			time.Sleep(50 * time.Millisecond)
		}
		if w.busy(released) {
			rep.Anomaly("%s phase: holders still acting 15s after the long holds ended", kind)
		}
	}()
	var tgt *holdTarget
	deadline := time.Now().Add(holdHolderWait)
	for tgt == nil && time.Now().Before(deadline) && ctx.Err() == nil {
		if x, ok := w.holder(ignore); ok {
			tgt = x
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tgt == nil {
		rep.Anomaly("%s phase: no holder acting (ignore SIGTERM: %v) within %s", kind, ignore, holdHolderWait)
		return nil
	}
	f, minHold, needTakeover, bounded := holdFault(kind, tgt, voters, all)
	ph := &holdPhase{Kind: kind, Target: tgt, Ignore: ignore, NeedTakeover: needTakeover, Bounded: bounded,
		Bound: HoldTTL + 250*time.Millisecond, Leader: holdLeader(ctx, w.etcdClient(), voters)}
	if _, ok := f.(*netFault); (ok || kind == "pause-cli+isolate") && bounded {
		// A network cut leaves the cut-off side's processes running: if
		// the leader is among them (or unknown), it may renew until it
		// steps down.
		cut := ph.Leader == "?"
		for _, x := range holdSide(kind, tgt, voters, all) {
			cut = cut || x.Name == ph.Leader
		}
		if cut {
			ph.Bound += 2 * holdElectionTimeout
		}
	}
	act, err := h.Inject(ctx, f)
	if err != nil {
		t.Errorf("%s phase: %v", kind, err)
		return nil
	}
	ph.Fault = f.String()
	ph.Start = time.Now()
	if log := h.FaultLog(); len(log) > 0 {
		for i := len(log) - 1; i >= 0; i-- {
			if log[i].Fault == ph.Fault {
				ph.Start = log[i].Start
				break
			}
		}
	}
	dctx, stopDuring := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.during(dctx, tgt)
	}()
	for {
		el := time.Since(ph.Start)
		if !ph.TookOver && w.tookOver(tgt) {
			ph.TookOver = true
		}
		if el >= minHold && (!needTakeover || ph.TookOver) {
			break
		}
		if el >= holdMaxFaultHold || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopDuring()
	<-done
	hctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = act.Heal(hctx)
	cancel()
	ph.Healed = time.Now()
	if err != nil {
		rep.Anomaly("%s phase: healing %s: %v", kind, f, err)
	}
	if needTakeover && !ph.TookOver {
		rep.Anomaly("%s phase: no new holder acted within %s of %s (holder %s)", kind, holdMaxFaultHold, f, tgt)
	}
	w.release()
	// The old CMD is gone by the heal, or at once after it: a paused CLI
	// (or host) finds its deadline passed on resume and kills CMD.
	alive := func() bool { return holdAlive(tgt.PID) && holdPPid(tgt.PID) == tgt.CLI.Pid() }
	end := time.Now().Add(10 * time.Second)
	for alive() && time.Now().Before(end) {
		time.Sleep(10 * time.Millisecond)
	}
	rep.Measure(fmt.Sprintf("%s: holder %s's CMD gone after the heal", kind, tgt), time.Since(ph.Healed), time.Second)
	w.afterPhase(ctx, ph)
	return ph
}

// judgePhase reports what a phase showed, given the old holder's last
// act (lastAct, and whether it logged an exit) and the next holder's
// first act (0: none).
func judgePhase(rep *Report, ph *holdPhase, what string, lastAct int64, exited, ignored bool, next string, nextFirst int64) {
	at := func(ns int64) string { return time.Duration(ns - ph.Start.UnixNano()).Round(time.Millisecond).String() }
	how := "killed (no exit)"
	if exited {
		how = "exited"
	}
	line := fmt.Sprintf("%s [%s] holder %s, ignored SIGTERM: %v: its last act at +%s (%s)", ph.Kind, ph.Fault, ph.Target, ignored, at(lastAct), how)
	if ph.Ignore && !ignored {
		rep.Anomaly("%s phase: the holder %s was to ignore SIGTERM but its records do not say it did", ph.Kind, ph.Target)
	}
	if nextFirst > 0 {
		gap := time.Duration(nextFirst - lastAct)
		line += fmt.Sprintf("; next %s %s first acted at +%s: %s after the old one's last act", what, next, at(nextFirst), gap.Round(time.Microsecond))
		if gap <= 0 {
			rep.Anomaly("%s phase (%s): the old holder %s acted %s after the new holder %s first acted", ph.Kind, ph.Fault, ph.Target, -gap, next)
		}
	} else {
		line += "; no next " + what
		if ph.NeedTakeover {
			rep.Anomaly("%s phase (%s): no new holder after %s in the records", ph.Kind, ph.Fault, ph.Target)
		}
	}
	if ph.NeedTakeover && ph.TookOver && nextFirst > ph.Healed.UnixNano() {
		rep.Anomaly("%s phase (%s): the takeover seen during the fault is not the next holder in the records (%s at +%s)", ph.Kind, ph.Fault, next, at(nextFirst))
	}
	rep.Note("%s", line)
	if ph.Bounded {
		rep.Measure(fmt.Sprintf("%s (etcd leader %s): holder %s's last act after the fault began", ph.Kind, ph.Leader, ph.Target),
			time.Duration(lastAct-ph.Start.UnixNano()), ph.Bound)
	}
}

// holdPidRE finds "<host> pid <N>" in an anomaly's text: the CMDs whose
// records and CLI's stderr the workloads log as evidence.
var holdPidRE = regexp.MustCompile(`\b([a-z][a-z0-9]*) pid (\d+)`)

func holdAnomalyPids(texts []string) map[string][]int {
	out := map[string][]int{}
	for _, s := range texts {
		for _, m := range holdPidRE.FindAllStringSubmatch(s, -1) {
			n, _ := strconv.Atoi(m[2])
			if !holdHasInt(out[m[1]], n) {
				out[m[1]] = append(out[m[1]], n)
			}
		}
	}
	return out
}

func holdHasInt(s []int, n int) bool {
	for _, x := range s {
		if x == n {
			return true
		}
	}
	return false
}

// holdWriteRecs writes records, one a line, runs of more than six of kind
// condensed to their first and last three.
func holdWriteRecs(b *strings.Builder, recs []holdRec, kind string) {
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].Kind == kind {
			j++
		}
		if j-i > 6 {
			for _, r := range recs[i : i+3] {
				fmt.Fprintf(b, "  %s\n", r)
			}
			fmt.Fprintf(b, "  … %d more %s lines …\n", j-i-6, kind)
			for _, r := range recs[j-3 : j] {
				fmt.Fprintf(b, "  %s\n", r)
			}
			i = j
			continue
		}
		if j == i {
			j++
		}
		for _, r := range recs[i:j] {
			fmt.Fprintf(b, "  %s\n", r)
		}
		i = j
	}
}

// holdSortedKeys of a map by string.
func holdSortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
