package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BarrierWorkload runs rounds of `beacon barrier NAME --count Count
// --ttl 2s --grace 500ms -- CMD` on the hosts, one name for all rounds (so
// the barrier's own rounds follow one another), with a fault in each:
// one participant is taken out while it waits (its CLI killed, its host
// isolated, its agent killed) or a voter is cut off, and replacements on
// other hosts complete the count. CMD appends "<ns> <host> <round>" to
// <dir>/<id>.start.
//
// Each round is judged at once: every participant that should be in ran
// CMD exactly once, all in the same barrier round, none before the test
// launched the participant that completed the count (no early trip); the
// participant taken out never ran CMD and its CLI failed; the barrier is
// empty afterwards (the last one out tidied it).
type BarrierWorkload struct {
	h     *Harness
	rep   *Report
	Name  string
	Count int
	dir   string
	etcd  *clientv3.Client
	seq   int
}

// NewBarrierWorkload prepares the workload; etcd is a client of the
// voters (holdsEtcd), for counting participants.
func NewBarrierWorkload(h *Harness, rep *Report, name string, count int, etcd *clientv3.Client) (*BarrierWorkload, error) {
	dir := filepath.Join(h.Dir(), "barrier", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &BarrierWorkload{h: h, rep: rep, Name: name, Count: count, dir: dir, etcd: etcd}, nil
}

// barrierPart is one participant: its CLI and its id.
type barrierPart struct {
	id   string
	host *Host
	proc *Proc
}

const barrierCmd = `date "+%s%N $BFX_HOST $BEACON_BARRIER_ROUND" >> "$BFX_BARRIER_DIR/$BFX_BARRIER_ID.start"; sleep 0.2`

// enter launches a participant on x.
func (w *BarrierWorkload) enter(ctx context.Context, x *Host) (*barrierPart, error) {
	w.seq++
	id := fmt.Sprintf("%s-%d", x.Name, w.seq)
	p, err := x.SpawnCmd(ctx, Cmd{
		Argv: []string{"beacon", "barrier", w.Name, "--count", strconv.Itoa(w.Count), "--ttl", "2s", "--grace", "500ms",
			"--timeout", "60s", "--", "sh", "-c", barrierCmd},
		Env:   []string{"BFX_BARRIER_DIR=" + w.dir, "BFX_BARRIER_ID=" + id},
		Label: "barrier-" + id,
	})
	if err != nil {
		return nil, err
	}
	return &barrierPart{id: id, host: x, proc: p}, nil
}

// waitIn waits until the barrier holds n participants (bounded).
func (w *BarrierWorkload) waitIn(ctx context.Context, n int64, bound time.Duration) error {
	err := testcluster.Eventually(bound, func() error {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := w.etcd.Get(rctx, "/beacon/barriers/"+w.Name+"/rounds/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		switch {
		case err != nil:
			return err
		case resp.Count != n:
			return fmt.Errorf("it holds %d", resp.Count)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("barrier %s: %d participants wanted after %s: %w", w.Name, n, bound, err)
	}
	return nil
}

// starts reads the lines CMD appended for a participant.
func (w *BarrierWorkload) starts(id string) []string {
	b, err := os.ReadFile(filepath.Join(w.dir, id+".start"))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// Round runs one round: Count-1 participants enter on hosts[0..], the
// first of them is taken out by out (which returns a heal), replacements
// enter on the next hosts until Count are in, and the round is judged.
func (w *BarrierWorkload) Round(ctx context.Context, what string, hosts []*Host, out func(p *barrierPart) (heal func() error, err error)) {
	fail := func(format string, args ...any) { w.rep.Anomaly("%s: "+format, append([]any{what}, args...)...) }
	var parts []*barrierPart
	next := 0
	launch := func() *barrierPart {
		p, err := w.enter(ctx, hosts[next%len(hosts)])
		next++
		if err != nil {
			fail("launching a participant: %v", err)
			return nil
		}
		parts = append(parts, p)
		return p
	}
	for i := 0; i < w.Count-1; i++ {
		if launch() == nil {
			return
		}
		if err := w.waitIn(ctx, int64(i+1), 30*time.Second); err != nil {
			fail("%v", err)
			return
		}
	}
	doomed := parts[0]
	heal, err := out(doomed)
	if err != nil {
		fail("taking %s out: %v", doomed.id, err)
		return
	}
	// Its key goes with its session: at once for a dead CLI, after the
	// TTL (2 s) for a dead or cut-off agent.
	if err := w.waitIn(ctx, int64(w.Count-2), 30*time.Second); err != nil {
		fail("the participant taken out is still counted: %v", err)
	}
	w.rep.Record("taken out", OK)
	launch()
	if err := w.waitIn(ctx, int64(w.Count-1), 30*time.Second); err != nil {
		fail("%v", err)
	}
	completed := time.Now()
	last := launch()
	if last == nil {
		return
	}
	members := parts[1:]
	for _, p := range members {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := p.proc.Wait(wctx)
		cancel()
		stderr := strings.TrimSpace(p.proc.Stderr())
		if err != nil && strings.Contains(stderr, "the participation was lost while") {
			// Its CMD ran, and was stopped when its agent could not
			// confirm the session's lease in time (a proxy whose etcd
			// connection went to the cut-off voter): a hold doing its
			// job, not the barrier failing.
			w.rep.Note("%s: participant %s lost its hold while CMD ran: %s", what, p.id, stderr)
			w.rep.Record("participant", Indeterminate)
			continue
		}
		if err != nil {
			fail("participant %s: %v; stderr %q", p.id, err, stderr)
			w.rep.Record("participant", Failed)
			continue
		}
		w.rep.Record("participant", OK)
	}
	if heal != nil {
		if err := heal(); err != nil {
			fail("healing: %v", err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	err = doomed.proc.Wait(wctx)
	cancel()
	if err == nil {
		fail("the participant taken out (%s) exited 0", doomed.id)
	}
	w.judge(what, doomed, members, completed)
	if err := w.waitIn(ctx, 0, 30*time.Second); err != nil {
		fail("after the round: %v", err)
	}
}

// judge checks the starts the round's CMDs wrote.
func (w *BarrierWorkload) judge(what string, doomed *barrierPart, members []*barrierPart, completed time.Time) {
	fail := func(format string, args ...any) { w.rep.Anomaly("%s: "+format, append([]any{what}, args...)...) }
	if s := w.starts(doomed.id); len(s) > 0 {
		fail("the participant taken out ran CMD: %v", s)
	}
	round := ""
	var latest time.Time
	for _, p := range members {
		s := w.starts(p.id)
		if len(s) != 1 {
			fail("participant %s ran CMD %d times: %v", p.id, len(s), s)
			continue
		}
		f := strings.Fields(s[0])
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || len(f) != 3 {
			fail("participant %s wrote %q", p.id, s[0])
			continue
		}
		at := time.Unix(0, ns)
		if at.Before(completed) {
			fail("participant %s ran CMD %s before the last participant was launched (an early trip)", p.id, completed.Sub(at))
		}
		if at.After(latest) {
			latest = at
		}
		if round == "" {
			round = f[2]
		} else if f[2] != round {
			fail("participant %s ran in barrier round %s, another in %s", p.id, f[2], round)
		}
	}
	if !latest.IsZero() {
		w.rep.Measure(what+": last launched → CMD on all", latest.Sub(completed), 5*time.Second)
	}
}

// barrierKillCLI: kill -9 of the participant's CLI.
func barrierKillCLI(p *barrierPart) (func() error, error) {
	return nil, p.proc.Signal(syscall.SIGKILL)
}
