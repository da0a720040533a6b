package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// queueClient is a Queue client of an agent, closed with the test.
func queueClient(t *testing.T, a *testcluster.Agent) (beaconpb.QueueClient, *client.Client) {
	t.Helper()
	c, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return beaconpb.NewQueueClient(c.Conn()), c
}

func queueCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// queueCLI runs beacon against an agent with stdin, returning stdout,
// stderr and the exit code.
func queueCLI(t *testing.T, a *testcluster.Agent, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testcluster.Binary(t), append([]string{"--agent", a.APIAddr}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("beacon %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// queueReserved is `beacon queue reserve -w json`.
type queueReserved struct {
	Message struct {
		ID         string `json:"id"`
		Payload    string `json:"payload"`
		Deliveries int    `json:"deliveries"`
	} `json:"message"`
	Receipt string `json:"receipt"`
}

func queueReserveCLI(t *testing.T, a *testcluster.Agent, args ...string) queueReserved {
	t.Helper()
	out, errOut, code := queueCLI(t, a, nil, append([]string{"queue", "reserve", "-w", "json"}, args...)...)
	var r queueReserved
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.Receipt == "" {
		t.Fatalf("beacon queue reserve %v: exit %d, %s%s", args, code, out, errOut)
	}
	return r
}

func queueStats(t *testing.T, q beaconpb.QueueClient, name string) *beaconpb.QueueStats {
	t.Helper()
	s, err := q.Stats(queueCtx(t), &beaconpb.QueueStatsRequest{Queue: name})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// queueWorker is a `beacon queue reserve QUEUE -- CMD` process.
type queueWorker struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func startQueueWorker(t *testing.T, a *testcluster.Agent, queue, script string, env ...string) *queueWorker {
	t.Helper()
	return startQueueWorkerWith(t, a, queue, nil, script, env...)
}

// startQueueWorkerWith is startQueueWorker with more flags for beacon.
func startQueueWorkerWith(t *testing.T, a *testcluster.Agent, queue string, flags []string, script string, env ...string) *queueWorker {
	t.Helper()
	args := append([]string{"queue", "reserve", queue, "--agent", a.APIAddr,
		"--count", "0", "--wait", "24h", "--visibility", "24h"}, flags...)
	cmd := exec.Command(testcluster.Binary(t), append(args, "--", "sh", "-c", script)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &queueWorker{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() { w.kill() })
	return w
}

func (w *queueWorker) kill() {
	_ = w.cmd.Process.Kill()
	<-w.exited
}

// queueZombie reads a /proc/PID/stat line: state Z is a process that has
// ended, not yet reaped.
func queueZombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && strings.HasPrefix(stat[i+1:], " Z")
}

// Producers on a member and a proxy, worker-form consumers on both killed
// at random with kill -9: in the end every message was handled and acked,
// or sits in the dead letters; none is lost; a message is handled twice
// only when redelivered after a kill (a higher delivery count), and there
// are no more duplicates than kills. The workers' visibility is 24h, so a
// killed worker's message comes back only because its session ended.
func TestQueueCrashingConsumers(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")
	agents := []*testcluster.Agent{a, b}
	const queue = "jobs"
	log := filepath.Join(t.TempDir(), "handled.log")
	// Handle = append "payload id deliveries" to the log, then linger a
	// little, so that kills land between handling and the ack too.
	script := `p=$(cat); echo "$p $BEACON_QUEUE_MESSAGE_ID $BEACON_QUEUE_DELIVERIES" >> "$HANDLED"; sleep 0.03`
	env := "HANDLED=" + log
	countLines := func() int {
		data, _ := os.ReadFile(log)
		return bytes.Count(data, []byte("\n"))
	}

	var mu sync.Mutex
	var workers []*queueWorker
	for i := range 3 {
		workers = append(workers, startQueueWorker(t, agents[i%2], queue, script, env))
	}

	// Producers: one per agent over gRPC, and some CLI pushes.
	var want []string
	var wg sync.WaitGroup
	for p, ag := range agents {
		q, _ := queueClient(t, ag)
		for i := range 60 {
			want = append(want, fmt.Sprintf("p%d-%d", p, i))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				if _, err := q.Enqueue(queueCtx(t), &beaconpb.QueueEnqueueRequest{Queue: queue, Payload: []byte(fmt.Sprintf("p%d-%d", p, i))}); err != nil {
					t.Errorf("enqueue through %s: %v", ag.Name, err)
					return
				}
			}
		}()
	}
	for i := range 6 {
		payload := fmt.Sprintf("cli-%d", i)
		want = append(want, payload)
		if _, errOut, code := queueCLI(t, b, nil, "queue", "push", queue, payload); code != 0 {
			t.Fatalf("beacon queue push: %s", errOut)
		}
	}

	// Kill a random worker each time a few more messages were handled,
	// and start a new one on a random agent.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const kills = 8
	for k := 0; k < kills; k++ {
		from := countLines()
		step := 2 + rng.IntN(8)
		if err := testcluster.Eventually(60*time.Second, func() error {
			if n := countLines(); n < from+step {
				return fmt.Errorf("%d lines handled, waiting for %d", n, from+step)
			}
			return nil
		}); err != nil {
			t.Fatalf("kill %d: %v", k, err)
		}
		mu.Lock()
		i := rng.IntN(len(workers))
		workers[i].kill()
		workers[i] = startQueueWorker(t, agents[rng.IntN(2)], queue, script, env)
		mu.Unlock()
	}
	wg.Wait()

	q, _ := queueClient(t, a)
	if err := testcluster.Eventually(60*time.Second, func() error {
		if s := queueStats(t, q, queue); s.Depth != 0 {
			return fmt.Errorf("queue still holds %d (%d in flight)", s.Depth, s.InFlight)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		w.kill()
	}

	// What was handled, and what is dead.
	handled := map[string][]int{} // payload → delivery counts
	ids := map[string]string{}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("bad log line %q", line)
		}
		n, _ := strconv.Atoi(f[2])
		handled[f[0]] = append(handled[f[0]], n)
		if prev, ok := ids[f[0]]; ok && prev != f[1] {
			t.Errorf("%s handled as message %s and %s", f[0], prev, f[1])
		}
		ids[f[0]] = f[1]
		total++
	}
	dead, err := q.DeadLetters(queueCtx(t), &beaconpb.QueueDeadLettersRequest{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	isDead := map[string]bool{}
	for _, m := range dead.Messages {
		isDead[string(m.Payload)] = true
	}
	for _, p := range want {
		if len(handled[p]) == 0 && !isDead[p] {
			t.Errorf("message %s lost: never handled, not in the dead letters", p)
		}
	}
	duplicates := total - len(handled)
	for p, counts := range handled {
		sort.Ints(counts)
		for i := 1; i < len(counts); i++ {
			if counts[i] == counts[i-1] {
				t.Errorf("%s handled twice in delivery %d: a duplicate without a redelivery", p, counts[i])
			}
		}
	}
	s := queueStats(t, q, queue)
	t.Logf("%d messages, %d handlings, %d duplicates after %d kills, %d dead; stats %v", len(want), total, duplicates, kills, len(dead.Messages), s)
	if duplicates > kills {
		t.Errorf("%d duplicates after only %d kills", duplicates, kills)
	}
	if s.Depth != 0 || s.InFlight != 0 || int(s.Dead) != len(dead.Messages) {
		t.Errorf("final stats %v", s)
	}
}

// The queue's contract, one case at a time, on a member and a proxy.
func TestQueueSemantics(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")
	qa, _ := queueClient(t, a)
	qb, cb := queueClient(t, b)

	t.Run("FIFO", func(t *testing.T) {
		for i := range 30 {
			if _, err := qa.Enqueue(queueCtx(t), &beaconpb.QueueEnqueueRequest{Queue: "fifo", Payload: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		sess, err := cb.NewSession(queueCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		receipt := ""
		for i := range 30 {
			r, err := qb.Reserve(queueCtx(t), &beaconpb.QueueReserveRequest{Queue: "fifo", SessionId: sess.ID, AckReceipt: receipt})
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Message.Payload) != strconv.Itoa(i) {
				t.Fatalf("delivery %d is message %q", i, r.Message.Payload)
			}
			receipt = r.Receipt
		}
		if _, err := qb.Ack(queueCtx(t), &beaconpb.QueueAckRequest{Receipt: receipt}); err != nil {
			t.Fatal(err)
		}
		if s := queueStats(t, qa, "fifo"); s.Depth != 0 {
			t.Fatalf("stats after draining: %v", s)
		}
	})

	t.Run("StaleReceipt", func(t *testing.T) {
		queueCLI(t, a, nil, "queue", "push", "stale", "x")
		first := queueReserveCLI(t, a, "stale", "--visibility", "1s")
		// The other agent's consumer takes it once the first deadline passes.
		second := queueReserveCLI(t, b, "stale", "--wait", "20s")
		if second.Message.ID != first.Message.ID || second.Message.Deliveries != 2 {
			t.Fatalf("second reservation %+v after %+v", second, first)
		}
		_, errOut, code := queueCLI(t, b, nil, "queue", "ack", first.Receipt)
		if code != 1 || !strings.Contains(errOut, "failed precondition") {
			t.Fatalf("ack with the stale receipt: exit %d, %s", code, errOut)
		}
		for _, call := range []func() error{
			func() error {
				_, err := qa.Ack(queueCtx(t), &beaconpb.QueueAckRequest{Receipt: first.Receipt})
				return err
			},
			func() error {
				_, err := qa.Nack(queueCtx(t), &beaconpb.QueueNackRequest{Receipt: first.Receipt})
				return err
			},
			func() error {
				_, err := qa.Extend(queueCtx(t), &beaconpb.QueueExtendRequest{Receipt: first.Receipt})
				return err
			},
		} {
			if err := call(); status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("stale receipt answered %v, want FailedPrecondition", err)
			}
		}
		if _, errOut, code := queueCLI(t, a, nil, "queue", "ack", second.Receipt); code != 0 {
			t.Fatalf("ack: %s", errOut)
		}
		if _, err := qa.Ack(queueCtx(t), &beaconpb.QueueAckRequest{Receipt: second.Receipt}); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("second ack: %v", err)
		}
	})

	t.Run("KilledWorkerAndCMD", func(t *testing.T) {
		queueCLI(t, a, nil, "queue", "push", "crash", "x")
		pidFile := filepath.Join(t.TempDir(), "pid")
		// The worker's session lives 120s without its keepalives: every
		// wait below ends well within that, so the message can only be
		// ready again because the agent revoked the session when its
		// stream broke, not because its lease expired.
		w := startQueueWorkerWith(t, b, "crash", []string{"--ttl", "120s"},
			`cat >/dev/null; echo $$ > "$PIDFILE.tmp"; mv "$PIDFILE.tmp" "$PIDFILE"; exec sleep 60`, "PIDFILE="+pidFile)
		var pid int
		if err := testcluster.Eventually(30*time.Second, func() error {
			data, err := os.ReadFile(pidFile)
			if err == nil {
				pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
			}
			return err
		}); err != nil {
			t.Fatalf("CMD did not start: %v", err)
		}
		w.kill() // kill -9 of beacon
		// CMD dies with it, and the message (visibility 24h) is ready again
		// because the session ended.
		if err := testcluster.Eventually(10*time.Second, func() error {
			// Gone, or a zombie waiting to be reaped by init.
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil || queueZombie(string(stat)) {
				return nil
			}
			return fmt.Errorf("CMD (pid %d) still runs", pid)
		}); err != nil {
			t.Fatal(err)
		}
		r, err := qa.Reserve(queueCtx(t), &beaconpb.QueueReserveRequest{Queue: "crash", Wait: durationpb.New(20 * time.Second)})
		if err != nil || r.Message.Deliveries != 2 {
			t.Fatalf("after the worker was killed: %v %v", r, err)
		}
	})

	t.Run("WorkerExitStatus", func(t *testing.T) {
		queueCLI(t, a, nil, "queue", "push", "work", "payload-1")
		out, errOut, code := queueCLI(t, b, nil, "queue", "reserve", "work", "--", "sh", "-c", `cat; echo " $BEACON_QUEUE_MESSAGE_ID $BEACON_QUEUE_DELIVERIES"; exit 3`)
		if code != 3 || out != "payload-1 1 1\n" {
			t.Fatalf("worker: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if s := queueStats(t, qa, "work"); s.Ready != 1 || s.InFlight != 0 {
			t.Fatalf("after CMD failed the message is not back: %v", s)
		}
		_, errOut, code = queueCLI(t, a, nil, "queue", "reserve", "work", "--", "sh", "-c", `test "$BEACON_QUEUE_DELIVERIES" = 2`)
		if code != 0 {
			t.Fatalf("second worker: exit %d %s", code, errOut)
		}
		if s := queueStats(t, qa, "work"); s.Depth != 0 {
			t.Fatalf("after CMD succeeded the message is not acked: %v", s)
		}
		_, errOut, code = queueCLI(t, a, nil, "queue", "reserve", "work", "--", "true")
		if code != 1 || !strings.Contains(errOut, "not found") {
			t.Fatalf("worker on an empty queue: exit %d %s", code, errOut)
		}
	})

	t.Run("MaxDeliveries", func(t *testing.T) {
		queueCLI(t, a, nil, "queue", "push", "poison", "bad")
		for i := 1; i <= 2; i++ {
			r := queueReserveCLI(t, b, "poison", "--max-deliveries", "2")
			if r.Message.Deliveries != i {
				t.Fatalf("delivery %d: %+v", i, r)
			}
			if _, errOut, code := queueCLI(t, b, nil, "queue", "nack", r.Receipt); code != 0 {
				t.Fatal(errOut)
			}
		}
		_, errOut, code := queueCLI(t, b, nil, "queue", "reserve", "poison", "--max-deliveries", "2")
		if code != 1 || !strings.Contains(errOut, "not found") {
			t.Fatalf("third reserve: exit %d %s", code, errOut)
		}
		out, errOut, code := queueCLI(t, a, nil, "queue", "dead", "poison", "-w", "json")
		var dead struct {
			Messages []struct {
				ID         string `json:"id"`
				Payload    string `json:"payload"`
				Deliveries int    `json:"deliveries"`
				DeadReason string `json:"dead_reason"`
			} `json:"messages"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &dead) != nil || len(dead.Messages) != 1 ||
			string(dead.Messages[0].Payload) != "bad" || dead.Messages[0].Deliveries != 2 || dead.Messages[0].DeadReason == "" {
			t.Fatalf("beacon queue dead: exit %d %s %s", code, out, errOut)
		}
		out, _, _ = queueCLI(t, a, nil, "queue", "stats", "poison", "-w", "json")
		var st struct {
			Depth, Dead uint64
		}
		if json.Unmarshal([]byte(out), &st) != nil || st.Depth != 0 || st.Dead != 1 {
			t.Fatalf("stats: %s", out)
		}
		out, _, _ = queueCLI(t, a, nil, "queue", "dead", "poison")
		if !strings.Contains(out, `"bad"`) || !strings.Contains(out, "max_deliveries 2") {
			t.Fatalf("dead letters table: %s", out)
		}

		// Redrive: ids or --all, never neither; an id that is no dead
		// letter fails the command, naming it.
		if _, errOut, code := queueCLI(t, a, nil, "queue", "redrive", "poison"); code != 2 || !strings.Contains(errOut, "--all") {
			t.Fatalf("redrive without ids: exit %d %s", code, errOut)
		}
		if _, errOut, code := queueCLI(t, a, nil, "queue", "redrive", "poison", "abc"); code != 2 || !strings.Contains(errOut, "abc") {
			t.Fatalf("redrive of a bad id: exit %d %s", code, errOut)
		}
		if _, errOut, code := queueCLI(t, a, nil, "queue", "redrive", "poison", "424242"); code != 1 || !strings.Contains(errOut, "424242") {
			t.Fatalf("redrive of no dead letter: exit %d %s", code, errOut)
		}
		id := dead.Messages[0].ID
		if out, errOut, code := queueCLI(t, b, nil, "queue", "redrive", "poison", id); code != 0 || strings.TrimSpace(out) != "redriven 1: "+id {
			t.Fatalf("redrive %s: exit %d %q %s", id, code, out, errOut)
		}
		// Back in line with its payload, deliveries counted afresh; then
		// buried again, and purged.
		r := queueReserveCLI(t, a, "poison", "--max-deliveries", "1")
		if r.Message.ID != id || string(r.Message.Payload) != "bad" || r.Message.Deliveries != 1 {
			t.Fatalf("after redrive: %+v", r)
		}
		queueCLI(t, a, nil, "queue", "nack", r.Receipt)
		queueCLI(t, a, nil, "queue", "reserve", "poison", "--max-deliveries", "1")
		if out, errOut, code := queueCLI(t, b, nil, "queue", "purge-dead", "poison", "--all"); code != 0 || strings.TrimSpace(out) != "purged 1: "+id {
			t.Fatalf("purge-dead --all: exit %d %q %s", code, out, errOut)
		}
		out, _, _ = queueCLI(t, a, nil, "queue", "stats", "poison", "-w", "json")
		if json.Unmarshal([]byte(out), &st) != nil || st.Depth != 0 || st.Dead != 0 {
			t.Fatalf("stats after purge: %s", out)
		}
	})

	t.Run("WaitCountAndDedup", func(t *testing.T) {
		cmd := exec.Command(testcluster.Binary(t), "queue", "wait", "batch", "--count", "5", "--agent", b.APIAddr)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		defer func() { _ = cmd.Process.Kill() }()
		for i := range 4 {
			queueCLI(t, a, nil, "queue", "push", "batch", "--dedup", fmt.Sprint("job-", i), fmt.Sprint(i))
		}
		// A duplicate adds nothing.
		out2, _, _ := queueCLI(t, a, nil, "queue", "push", "batch", "--dedup", "job-0", "again", "-w", "json")
		var dup struct{ Duplicate bool }
		if json.Unmarshal([]byte(out2), &dup) != nil || !dup.Duplicate {
			t.Fatalf("duplicate push: %s", out2)
		}
		if s := queueStats(t, qb, "batch"); s.Depth != 4 {
			t.Fatalf("depth %d after 4 pushes and a duplicate", s.Depth)
		}
		select {
		case err := <-exited:
			t.Fatalf("wait --count 5 ended with 4 messages: %v %s", err, out.String())
		default:
		}
		queueCLI(t, a, nil, "queue", "push", "batch", "4")
		select {
		case err := <-exited:
			if err != nil || strings.TrimSpace(out.String()) != "5" {
				t.Fatalf("wait: %v, printed %q", err, out.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("wait --count 5 still waits with 5 messages")
		}
	})

	t.Run("Delay", func(t *testing.T) {
		queueCLI(t, a, nil, "queue", "push", "later", "--delay", "1s", "x")
		if _, errOut, code := queueCLI(t, b, nil, "queue", "reserve", "later"); code != 1 || !strings.Contains(errOut, "not found") {
			t.Fatalf("delayed message handed out early: exit %d %s", code, errOut)
		}
		if r := queueReserveCLI(t, b, "later", "--wait", "20s"); string(r.Message.Payload) != "x" {
			t.Fatalf("got %+v", r)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		big := bytes.Repeat([]byte("x"), 1<<20+1)
		for _, tc := range []struct {
			field string
			stdin []byte
			args  []string
		}{
			{"queue", nil, []string{"queue", "push", "", "x"}},
			{"queue", nil, []string{"queue", "push", "a/b", "x"}},
			{"payload", big, []string{"queue", "push", "q"}},
			{"delay", nil, []string{"queue", "push", "q", "--delay", "25h", "x"}},
			{"dedup_window", nil, []string{"queue", "push", "q", "--dedup", "d", "--dedup-window", "0s", "x"}},
			{"visibility", nil, []string{"queue", "reserve", "q", "--visibility", "0s"}},
			{"visibility", nil, []string{"queue", "reserve", "q", "--visibility", "25h"}},
			{"wait", nil, []string{"queue", "reserve", "q", "--wait", "25h"}},
			{"max_deliveries", nil, []string{"queue", "reserve", "q", "--max-deliveries", "0"}},
			{"queue", nil, []string{"queue", "stats", "a/b"}},
			{"queue", nil, []string{"queue", "wait", "", "--count", "1"}},
			{"count", nil, []string{"queue", "wait", "q", "--count", "0"}},
			{"receipt", nil, []string{"queue", "ack", "nonsense"}},
			{"visibility", nil, []string{"queue", "extend", "q/1/1", "--visibility", "0s"}},
		} {
			_, errOut, code := queueCLI(t, a, tc.stdin, tc.args...)
			if code != 1 || !strings.Contains(errOut, "invalid argument: "+tc.field+":") {
				t.Errorf("beacon %v: exit %d, %q; want invalid argument naming %s", tc.args[:min(len(tc.args), 4)], code, errOut, tc.field)
			}
		}
		_, err := qa.Enqueue(queueCtx(t), &beaconpb.QueueEnqueueRequest{Queue: "q", Payload: big})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "payload") {
			t.Errorf("gRPC enqueue of 1 MiB + 1: %v", err)
		}
		_, err = qa.Reserve(queueCtx(t), &beaconpb.QueueReserveRequest{Queue: "q", SessionId: "nope"})
		if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "session_id") {
			t.Errorf("reserve in an unknown session: %v", err)
		}
		if s := queueStats(t, qa, "q"); s.Depth != 0 {
			t.Errorf("bad input left messages: %v", s)
		}
	})
}
