package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/faults/check"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// HoldWorkload runs `beacon lock NAME -- CMD` (Kind "lock") or `beacon
// elect NAME -- CMD` (Kind "elect") in a loop on each of its hosts, every
// CLI with --ttl HoldTTL --grace HoldGrace, and restarts the CLI when it
// exits. CMD logs its enter (check.ShellAppend, with the token from
// BEACON_LOCK_TOKEN or BEACON_LEADER_REV) and its key, then acts a few
// times (for as long as the long flag exists): it appends the act's time
// and the value it is about to write, does `beacon fenced put REG VALUE`
// (from BEACON_LOCK_KEY/TOKEN or BEACON_LEADER_KEY/REV) and appends the
// put's return time and exit status; it sleeps 50–200 ms between acts and
// logs its exit at the end. Meanwhile a loop of CMD's (in its process
// group, killed before the exit is logged) appends a tick every 50 ms, so
// that CMD keeps acting while a fenced put hangs on a cut-off agent. On
// SIGTERM CMD logs its exit and leaves, unless the ignore flag made it
// (and its ticks) ignore SIGTERM: then only SIGKILL stops it, and its
// interval ends at the last line it wrote.
//
// Check judges it: no two CMDs' intervals (enter to exit, or to the last
// line a killed CMD wrote) overlap, in token order (check.CheckExclusive);
// the fenced register took only writes of non-decreasing tokens, none of
// a superseded holder and none refused (check.CheckFenced, with the
// register's complete history replayed from etcd and its final value).
type HoldWorkload struct {
	h     *Harness
	rep   *Report
	Kind  string // "lock" or "elect"
	Name  string // the lock's or election's name
	Reg   string // the fenced register, an etcd key
	dir   string
	hosts []*Host
	etcd  *clientv3.Client

	tokVar   string
	keyVar   string
	startRev int64

	// MaxSpawns bounds the CLI starts per host (a soak raises it with
	// its duration).
	MaxSpawns int

	mu     sync.Mutex
	clis   map[int]*holdCLI // by CLI pid
	cliErr map[int]string   // CLI pid -> its last stderr line, once ended
	phases []*holdPhase
	stale  []check.Write // superseded holders' writes the test made
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewHoldWorkload prepares a lock or elect workload on hosts; etcd is a
// client of the voters (holdsEtcd) for the checks.
func NewHoldWorkload(h *Harness, rep *Report, kind, name string, etcd *clientv3.Client) *HoldWorkload {
	w := &HoldWorkload{h: h, rep: rep, Kind: kind, Name: name, Reg: "/fx/" + kind + "-" + name,
		dir: filepath.Join(h.Dir(), "holds", kind+"-"+name), etcd: etcd,
		clis: map[int]*holdCLI{}, cliErr: map[int]string{}, MaxSpawns: holdMaxSpawns}
	switch kind {
	case "lock":
		w.tokVar, w.keyVar = "BEACON_LOCK_TOKEN", "BEACON_LOCK_KEY"
	case "elect":
		w.tokVar, w.keyVar = "BEACON_LEADER_REV", "BEACON_LEADER_KEY"
	default:
		panic("hold workload kind " + kind)
	}
	return w
}

func (w *HoldWorkload) report() *Report              { return w.rep }
func (w *HoldWorkload) etcdClient() *clientv3.Client { return w.etcd }

func (w *HoldWorkload) jsonl(x *Host) string { return filepath.Join(w.dir, x.Name+".jsonl") }
func (w *HoldWorkload) acts(x *Host) string  { return filepath.Join(w.dir, x.Name+".acts") }

// holdScript is CMD; @…@ are filled in per host.
const holdScript = `date() { command date "$@" || command date "$@" || command date "$@"; }
ex() { trap '' TERM; [ -n "$xd" ] && return; xd=1; kill -KILL $tp 2>/dev/null; wait $tp 2>/dev/null; @EXIT@; }
@ENTER@
a=@ACTS@; d=@DIR@; ig=0
date "+%s%N $$ key $@KEY@" >> "$a"
(
	while :; do
		[ -e "$d/ignore" ] && trap '' TERM
		date "+%s%N $$ tick" >> "$a"
		sleep 0.05
	done
) &
tp=$!
ign() { trap '' TERM; ig=1; date "+%s%N $$ ignore" >> "$a"; }
trap 'trap "" TERM; date "+%s%N $$ term" >> "$a"; ex; exit 143' TERM
[ -e "$d/ignore" ] && ign
n=$((2 + $$ % 4)); i=0
while [ $i -lt $n ] || { [ -e "$d/long" ] && [ $i -lt @MAX@ ]; }; do
	i=$((i + 1))
	[ $ig = 0 ] && [ -e "$d/ignore" ] && ign
	v="@HOST@.$$.${@TOK@:-0}.$i"
	date "+%s%N $$ act $v" >> "$a"
	beacon fenced put @REG@ "$v" -w json --call-timeout 3s > "$d/out/$v" 2>&1
	rc=$?
	date "+%s%N $$ put $v $rc" >> "$a"
	ms=$((50 + ($$ * 7 + i * 37) % 150))
	sleep "0.$(printf %03d $ms)"
done
ex
`

func (w *HoldWorkload) script(x *Host) string {
	return strings.NewReplacer(
		"@EXIT@", check.ShellAppend(w.jsonl(x), check.Exit, x.Name, w.Name, w.tokVar),
		"@ENTER@", check.ShellAppend(w.jsonl(x), check.Enter, x.Name, w.Name, w.tokVar),
		"@ACTS@", holdQuote(w.acts(x)),
		"@DIR@", holdQuote(w.dir),
		"@MAX@", strconv.Itoa(holdMaxActs),
		"@HOST@", x.Name,
		"@TOK@", w.tokVar,
		"@KEY@", w.keyVar,
		"@REG@", holdQuote(w.Reg),
	).Replace(holdScript)
}

func (w *HoldWorkload) argv(x *Host) []string {
	return []string{"beacon", w.Kind, w.Name, "--ttl", HoldTTL.String(), "--grace", HoldGrace.String(), "--", "sh", "-c", w.script(x)}
}

// Start records the register's revision, then starts a CLI loop on each
// host.
func (w *HoldWorkload) Start(ctx context.Context, hosts []*Host) error {
	if err := os.MkdirAll(filepath.Join(w.dir, "out"), 0o755); err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.etcd.Get(gctx, w.Reg)
	cancel()
	if err != nil {
		return fmt.Errorf("reading %s: %v", w.Reg, err)
	}
	if len(resp.Kvs) > 0 {
		return fmt.Errorf("register %s exists already", w.Reg)
	}
	w.startRev = resp.Header.Revision
	w.hosts = hosts
	lctx, stop := context.WithCancel(context.Background())
	w.cancel = stop
	for _, x := range hosts {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			holdLoop(lctx, x, w.Kind, w.MaxSpawns, func() []string { return w.argv(x) },
				func(p *Proc) {
					w.mu.Lock()
					w.clis[p.Pid()] = &holdCLI{p: p, host: x}
					w.mu.Unlock()
				},
				func(p *Proc) {
					w.rep.Record(w.Kind+" cli", holdCLIOutcome(p))
					w.mu.Lock()
					w.cliErr[p.Pid()] = holdLastLine(p.Stderr())
					w.mu.Unlock()
				})
		}()
	}
	return nil
}

func holdLastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Stop stops every CLI (SIGTERM: CMD gets it, and SIGKILL after the
// grace if it ignores it) and waits for the loops, then for the holders'
// keys to be gone, so that no fenced write can apply any more.
func (w *HoldWorkload) Stop(ctx context.Context) error {
	w.release()
	if w.cancel != nil {
		w.cancel()
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		return errors.New("holder loops did not stop within a minute")
	}
	prefix := "/beacon/locks/" + w.Name + "/"
	if w.Kind == "elect" {
		prefix = "/beacon/elections/" + w.Name + "/"
	}
	return holdWaitNoKeys(ctx, w.etcd, prefix, 3*HoldTTL+10*time.Second)
}

func (w *HoldWorkload) prepare(ctx context.Context, ignore bool) {
	holdTouch(filepath.Join(w.dir, "long"))
	if ignore {
		holdTouch(filepath.Join(w.dir, "ignore"))
	}
}

func (w *HoldWorkload) release() {
	_ = os.Remove(filepath.Join(w.dir, "long"))
	_ = os.Remove(filepath.Join(w.dir, "ignore"))
}

// SetFlags turns long holds and SIGTERM-ignoring on or off (the soak).
func (w *HoldWorkload) SetFlags(long, ignore bool) {
	holdSetFlag(filepath.Join(w.dir, "long"), long)
	holdSetFlag(filepath.Join(w.dir, "ignore"), ignore)
}

func holdTouch(path string) { _ = os.WriteFile(path, nil, 0o644) }

func holdSetFlag(path string, on bool) {
	if on {
		holdTouch(path)
	} else {
		_ = os.Remove(path)
	}
}

func (w *HoldWorkload) during(ctx context.Context, t *holdTarget) {}

// holdRun is one CMD run of a lock or elect workload.
type holdRun struct {
	Host       string
	PID, PPID  int
	Token      int64
	Key        string // the lock key or leader key CMD held
	Enter      int64
	Exit       int64 // 0: no exit logged
	Last       int64 // its last line: enter, act, put, ignore, term or exit
	Acts       int
	Ignored    bool
	Termed     bool
	Recs       []holdRec
	Src        string
	exitLogged bool
}

func (r *holdRun) String() string {
	return fmt.Sprintf("%s pid %d token %d", r.Host, r.PID, r.Token)
}

// runs reads the records: every CMD run, with its lines.
func (w *HoldWorkload) runs() ([]*holdRun, []check.Event, error) {
	// The acts first: CMD writes its enter before any act, so every act
	// read here has its enter in the events read after, even while CMDs
	// run (a read in the other order can see an act whose enter it missed).
	recsOf := map[string][]holdRec{}
	for _, x := range w.hosts {
		recs, err := readHoldRecs(w.acts(x))
		if err != nil {
			return nil, nil, err
		}
		recsOf[x.Name] = recs
	}
	paths, _ := filepath.Glob(filepath.Join(w.dir, "*.jsonl"))
	events, err := check.ReadEvents(paths...)
	if err != nil {
		return nil, nil, err
	}
	byHost := map[string][]*holdRun{}
	var all []*holdRun
	open := map[string]*holdRun{}
	key := func(host string, pid int, tok int64) string { return fmt.Sprintf("%s/%d/%d", host, pid, tok) }
	for _, e := range events {
		switch e.Kind {
		case check.Enter:
			r := &holdRun{Host: e.Host, PID: e.PID, PPID: e.PPID, Token: e.Token, Enter: e.Time, Last: e.Time, Src: e.Source}
			byHost[e.Host] = append(byHost[e.Host], r)
			all = append(all, r)
			open[key(e.Host, e.PID, e.Token)] = r
		case check.Exit:
			if r := open[key(e.Host, e.PID, e.Token)]; r != nil {
				r.Exit, r.exitLogged = e.Time, true
				r.Last = max(r.Last, e.Time)
			}
		}
	}
	for _, x := range w.hosts {
		for _, rec := range recsOf[x.Name] {
			var run *holdRun
			for _, r := range byHost[x.Name] {
				if r.PID == rec.PID && r.Enter <= rec.T && (run == nil || r.Enter > run.Enter) {
					run = r
				}
			}
			if run == nil {
				return nil, nil, fmt.Errorf("%s: a record of pid %d without an enter before it", rec.Src, rec.PID)
			}
			run.Recs = append(run.Recs, rec)
			run.Last = max(run.Last, rec.T)
			switch rec.Kind {
			case "act":
				run.Acts++
			case "ignore":
				run.Ignored = true
			case "term":
				run.Termed = true
			case "key":
				if len(rec.Args) == 1 {
					run.Key = rec.Args[0]
				}
			}
		}
	}
	return all, events, nil
}

// holder finds the CMD acting now: its run has no exit, its process is
// alive under one of the workload's CLIs, it has acted twice, the last
// time within a second, and (ignore) it has SIGTERM ignored.
func (w *HoldWorkload) holder(ignore bool) (*holdTarget, bool) {
	runs, _, err := w.runs()
	if err != nil {
		return nil, false
	}
	now := time.Now().UnixNano()
	var best *holdTarget
	for _, r := range runs {
		if r.exitLogged || r.Acts < 2 || now-r.Last > int64(time.Second) || !holdAlive(r.PID) {
			continue
		}
		w.mu.Lock()
		cli := w.clis[holdPPid(r.PID)]
		w.mu.Unlock()
		if cli == nil || cli.p.Exited() || cli.host.Name != r.Host {
			continue
		}
		if ignore != holdIgnoresTerm(r.PID) {
			continue
		}
		if best == nil || r.Enter > best.Enter {
			best = &holdTarget{Host: cli.host, CLI: cli.p, PID: r.PID, Token: r.Token, Enter: r.Enter}
		}
	}
	return best, best != nil
}

// tookOver: another CMD entered after t and has acted.
func (w *HoldWorkload) tookOver(t *holdTarget) bool {
	runs, _, err := w.runs()
	if err != nil {
		return false
	}
	for _, r := range runs {
		if r.Enter > t.Enter && !(r.Host == t.Host.Name && r.PID == t.PID) && r.Acts >= 1 {
			return true
		}
	}
	return false
}

// busy: a CMD that entered before t still runs.
func (w *HoldWorkload) busy(before int64) bool {
	runs, _, err := w.runs()
	if err != nil {
		return false
	}
	for _, r := range runs {
		if r.Enter < before && !r.exitLogged && holdCMDRuns(&w.mu, w.clis, r.PID, r.Host) {
			return true
		}
	}
	return false
}

// afterPhase: once a later holder has entered, the phase's holder's
// grant has ended for good, so a fenced write under it — made here, from
// its host, with its key and token — must be refused.
func (w *HoldWorkload) afterPhase(ctx context.Context, ph *holdPhase) {
	var old *holdRun
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) && ctx.Err() == nil {
		runs, _, err := w.runs()
		if err == nil {
			for _, r := range runs {
				if r.Host == ph.Target.Host.Name && r.PID == ph.Target.PID && r.Enter == ph.Target.Enter {
					old = r
				}
			}
			for _, r := range runs {
				if old != nil && r.Enter > old.Enter && old.Key != "" {
					w.staleWrite(ctx, ph, old)
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.rep.Anomaly("%s phase: no holder after %s within 20s of the heal", ph.Kind, ph.Target)
}

func (w *HoldWorkload) staleWrite(ctx context.Context, ph *holdPhase, old *holdRun) {
	v := fmt.Sprintf("stale.%s.%s.%d.%d", ph.Kind, old.Host, old.PID, old.Token)
	res := ph.Target.Host.Run(ctx, "fenced", "put", w.Reg, v, "--lock-key", old.Key, "--token", strconv.FormatInt(old.Token, 10), "-w", "json", "--call-timeout", "3s")
	wr := check.Write{Client: "stale/" + old.Host, Token: old.Token, Value: v, Invoke: res.Start.UnixNano(), Return: res.End.UnixNano(), Outcome: check.Indeterminate}
	o := res.Outcome()
	switch {
	case o == OK:
		wr.Outcome = check.OK
		if m := holdRevRE.FindStringSubmatch(res.Stdout); m != nil {
			wr.Revision, _ = strconv.ParseInt(m[1], 10, 64)
		}
		w.rep.Anomaly("%s phase: a fenced write under the superseded grant of %s (key %s) was accepted", ph.Kind, old, old.Key)
	case strings.Contains(res.Stderr, "failed precondition") || strings.Contains(res.Stderr, "no longer holds"):
		wr.Outcome = check.Failed
	default:
		o = Indeterminate
		w.rep.Note("%s phase: the stale fenced put under %s: %s", ph.Kind, old, res.Line())
	}
	w.rep.Record(w.Kind+" stale fenced put", o)
	w.mu.Lock()
	w.stale = append(w.stale, wr)
	w.mu.Unlock()
}

// RunPhase runs one targeted fault phase on this workload.
func (w *HoldWorkload) RunPhase(ctx context.Context, t *testing.T, kind string, ignore bool, voters, all []*Host) {
	t.Helper()
	if ph := runHoldPhase(ctx, t, w.h, w, kind, ignore, voters, all); ph != nil {
		w.mu.Lock()
		w.phases = append(w.phases, ph)
		w.mu.Unlock()
	}
}

var holdRevRE = regexp.MustCompile(`"revision":\s*"?(\d+)`)

// judge checks the CMD runs' intervals, and the fenced writes against
// the register's final value and its history of values (nil: unknown),
// reporting anomalies; it returns their texts.
func (w *HoldWorkload) judge(t testing.TB, runs []*holdRun, events []check.Event, final string, observed []string) ([]string, error) {
	t.Helper()
	// Intervals: a CMD without an exit ends at its last line (a dead
	// event there, after the file's events so that it follows an enter of
	// the same instant). A CMD's group may write after its exit line: the
	// tick loop's date, forked just before ex() killed the loop, outlives
	// it. That is CMD's group still running, which the supervisor waits
	// out before the hold ends, so such a CMD's interval ends at its last
	// line too, and the overlap check judges it.
	killed, late := 0, 0
	lastOf := map[string]int64{}
	runKey := func(host string, pid int, tok int64) string { return fmt.Sprintf("%s/%d/%d", host, pid, tok) }
	for _, r := range runs {
		switch {
		case !r.exitLogged:
			killed++
			events = append(events, check.Event{Time: r.Last, Kind: check.Dead, Host: r.Host, PID: r.PID, Token: r.Token, Name: w.Name})
		case r.Last > r.Exit:
			late++
			lastOf[runKey(r.Host, r.PID, r.Token)] = r.Last
		}
		o := OK
		if !r.exitLogged || r.Termed {
			o = Failed
		}
		w.rep.Record(w.Kind+" hold", o)
	}
	w.rep.Note("%d CMD runs, %d of them stopped by SIGKILL (no exit logged: their intervals end at their last act), %d with a line after their exit line (their intervals end at it)", len(runs), killed, late)
	ivs, anoms := check.BuildIntervals(events)
	for i, iv := range ivs {
		if last, ok := lastOf[runKey(iv.Host, iv.PID, iv.Token)]; ok && last > iv.End {
			ivs[i].End = last
		}
	}
	anoms = append(anoms, w.thawWindows(ivs)...)
	anoms = append(anoms, check.CheckIntervals(ivs, 1)...)
	var texts []string
	for _, a := range anoms {
		w.rep.Anomaly("%s", a)
		texts = append(texts, a.Text)
	}

	// Fenced writes.
	fh := check.FencedHistory{Final: &final, Observed: observed}
	for _, r := range runs {
		puts := map[string]holdRec{}
		for _, rec := range r.Recs {
			if rec.Kind == "put" && len(rec.Args) == 2 {
				puts[rec.Args[0]] = rec
			}
		}
		for _, rec := range r.Recs {
			if rec.Kind != "act" || len(rec.Args) != 1 {
				continue
			}
			v := rec.Args[0]
			wr := check.Write{Client: fmt.Sprintf("%s/%d", r.Host, r.PID), Token: r.Token, Value: v, Invoke: rec.T, Outcome: check.Indeterminate}
			if p, ok := puts[v]; ok {
				wr.Return = p.T
				out, _ := os.ReadFile(filepath.Join(w.dir, "out", v))
				switch {
				case p.Args[1] == "0":
					wr.Outcome = check.OK
					if m := holdRevRE.FindSubmatch(out); m != nil {
						wr.Revision, _ = strconv.ParseInt(string(m[1]), 10, 64)
					}
				case strings.Contains(string(out), "failed precondition") || strings.Contains(string(out), "no longer holds"):
					wr.Outcome = check.Failed
				}
			}
			if r.Token <= 0 {
				w.rep.Anomaly("%s wrote %q without a token", r, v)
				continue
			}
			fh.Writes = append(fh.Writes, wr)
			w.rep.Record(w.Kind+" fenced put", map[check.Outcome]Outcome{check.OK: OK, check.Failed: Failed, check.Indeterminate: Indeterminate}[wr.Outcome])
		}
	}
	w.mu.Lock()
	fh.Writes = append(fh.Writes, w.stale...)
	w.mu.Unlock()
	w.rep.Note("fenced register %s: %d writes, %d applied (observed), final %q", w.Reg, len(fh.Writes), len(fh.Observed), final)
	fanoms, err := check.CheckFenced(fh, check.WithVisualization(w.dir), check.WithTimeout(time.Minute))
	if err != nil && !errors.Is(err, check.ErrInconclusive) {
		return nil, err
	}
	if err != nil {
		t.Errorf("%s: fenced register check: %v", w.Kind, err)
	}
	for _, a := range fanoms {
		w.rep.Anomaly("%s", a)
		texts = append(texts, a.Text)
	}
	return texts, nil
}

// Check judges the records (call after Stop) and reports to the report;
// it returns an error only when the history cannot be judged.
func (w *HoldWorkload) Check(ctx context.Context, t *testing.T) error {
	t.Helper()
	runs, events, err := w.runs()
	if err != nil {
		return err
	}
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	resp, err := w.etcd.Get(gctx, w.Reg)
	cancel()
	if err != nil {
		return fmt.Errorf("final read of %s: %v", w.Reg, err)
	}
	final := ""
	var observed []string
	if len(resp.Kvs) > 0 {
		final = string(resp.Kvs[0].Value)
		evs, err := holdHistory(ctx, w.etcd, w.Reg, false, w.startRev+1, resp.Kvs[0].ModRevision)
		if err != nil {
			w.rep.Note("the register's history could not be replayed (%v): checked without it", err)
		} else {
			observed = []string{}
			for _, ev := range evs {
				if ev.Type == clientv3.EventTypePut {
					observed = append(observed, string(ev.Kv.Value))
				} else {
					w.rep.Anomaly("the register %s was deleted at revision %d", w.Reg, ev.Kv.ModRevision)
				}
			}
		}
	}
	texts, err := w.judge(t, runs, events, final, observed)
	if err != nil {
		return err
	}

	// The phases: what each fault showed.
	w.mu.Lock()
	phases := append([]*holdPhase{}, w.phases...)
	w.mu.Unlock()
	for _, ph := range phases {
		var old, next *holdRun
		for _, r := range runs {
			if r.Host == ph.Target.Host.Name && r.PID == ph.Target.PID && r.Token == ph.Target.Token && r.Enter == ph.Target.Enter {
				old = r
			}
		}
		if old == nil {
			w.rep.Anomaly("%s phase: the holder %s is not in the records", ph.Kind, ph.Target)
			continue
		}
		for _, r := range runs {
			if r != old && r.Enter > old.Enter && (next == nil || r.Enter < next.Enter) {
				next = r
			}
		}
		var nextFirst int64
		nextName := ""
		if next != nil {
			nextFirst, nextName = next.Enter, next.String()
		}
		judgePhase(w.rep, ph, "holder", old.Last, old.exitLogged, old.Ignored, nextName, nextFirst)
		texts = append(texts, old.String())
	}
	if len(w.rep.Anomalies()) > 0 {
		w.evidence(t, runs, texts)
	}
	return nil
}

// evidence logs the records of the CMDs an anomaly names, and their
// CLIs' stderr.
func (w *HoldWorkload) evidence(t *testing.T, runs []*holdRun, texts []string) {
	t.Helper()
	pids := holdAnomalyPids(texts)
	for _, host := range holdSortedKeys(pids) {
		for _, pid := range pids[host] {
			for _, r := range runs {
				if r.Host != host || r.PID != pid {
					continue
				}
				var b strings.Builder
				fmt.Fprintf(&b, "--- %s CMD %s (%s), enter %s:\n", w.Kind, r, r.Src, holdStamp(r.Enter))
				holdWriteRecs(&b, r.Recs, "tick")
				if r.exitLogged {
					fmt.Fprintf(&b, "  exit at %s\n", holdStamp(r.Exit))
				}
				w.mu.Lock()
				cli := w.clis[r.PPID]
				w.mu.Unlock()
				if cli != nil {
					fmt.Fprintf(&b, "  its CLI %s pid %d (exit %d), stderr:\n%s\n", cli.p.Label, cli.p.Pid(), cli.p.ExitCode(), tail(cli.p.Stderr(), 15))
				}
				t.Log(b.String())
			}
		}
	}
}

// holdThawWindow bounds how long a CMD may run after its whole host
// thawed from a pause that outlasted its hold: every process of the host,
// the guard included, was frozen while the hold's deadline passed, and
// on the thaw the kernel runs them in no order the guard controls, so CMD
// can act before the guard's overdue SIGKILL lands (docs/reliability.md,
// known limits; the fenced register refuses its writes).
const holdThawWindow = 100 * time.Millisecond

// thawWindows cuts each CMD interval that a whole-host pause froze and
// that ended within holdThawWindow after the thaw at the pause's start:
// frozen, CMD did not run, and the overlap check judges the rest. What
// it ran after the thaw is noted, and an anomaly beyond the window.
func (w *HoldWorkload) thawWindows(ivs []check.Interval) []check.Anomaly {
	if w.h == nil {
		return nil
	}
	var anoms []check.Anomaly
	var worst time.Duration
	cut := 0
	for _, f := range w.h.FaultLog() {
		host, ok := strings.CutPrefix(f.Fault, "pause host ")
		if !ok || f.End.IsZero() {
			continue
		}
		from, to := f.Start.UnixNano(), f.End.UnixNano()
		for i, iv := range ivs {
			if iv.Host != host || iv.Enter >= from || iv.End <= to || !overlapsAnother(ivs, i) {
				// A pause shorter than the hold leaves it valid: CMD goes
				// on, and nobody else may have entered.
				continue
			}
			after := time.Duration(iv.End - to)
			if after > holdThawWindow {
				anoms = append(anoms, check.Anomaly{Kind: "thaw-window", Text: fmt.Sprintf(
					"%s ran %s after its host thawed (paused %s → %s), over the %s window", iv, after,
					f.Start.Format("15:04:05.000"), f.End.Format("15:04:05.000"), holdThawWindow)})
				continue
			}
			ivs[i].End = from
			cut++
			worst = max(worst, after)
		}
	}
	if cut > 0 {
		w.rep.Note("%d CMD runs frozen by a whole-host pause ran on for at most %s after the thaw (their intervals end at the pause; bound %s)", cut, worst, holdThawWindow)
	}
	return anoms
}

// overlapsAnother: another interval of the same name overlaps ivs[i].
func overlapsAnother(ivs []check.Interval, i int) bool {
	for j, o := range ivs {
		if j != i && o.Name == ivs[i].Name && o.Enter < ivs[i].End && o.End > ivs[i].Enter {
			return true
		}
	}
	return false
}
