package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// Scenario (a): three workers on three agents; ten small tasks and a
// --last big one pushed in random order behind a gate --count 10. No
// reservation is made before the tenth small push, the small tasks start
// in push order, the big one only once all ten are acked.
func TestQueueGateCount(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	const queue = "build"
	log := filepath.Join(t.TempDir(), "started.log")
	gateCLI(t, agents[0], queue, "--count", "10")
	for i, a := range agents {
		startQueueWorker(t, a, queue, gateWorkerScript, gateWorkerEnv(t, agents[i], log)...)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	order := append([]string{"big"}, make([]string, 10)...)
	for i := range 10 {
		order[i+1] = fmt.Sprintf("small-%d", i)
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	small, tenth := 0, int64(0)
	pushed := map[string]string{} // payload → id
	for i, p := range order {
		args := []string{"queue", "push", queue, p}
		if p == "big" {
			args = []string{"queue", "push", queue, "--last", p}
		} else {
			small++
		}
		if small == 10 && p != "big" {
			wantNothingReserved(t, agents[i%3], queue, "before the tenth small push")
		}
		out, errOut, code := queueCLI(t, agents[i%3], nil, args...)
		if code != 0 {
			t.Fatalf("beacon %v: %s", args, errOut)
		}
		pushed[p] = strings.TrimSpace(out)
		if small == 10 && tenth == 0 {
			tenth = seqRevision(t, agents[0], queue)
		}
	}
	got := waitGateLog(t, log, 11)
	if len(got) != 11 {
		t.Fatalf("%d tasks started, want 11: %+v", len(got), got)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].rev < got[j].rev })
	var ids []int
	for i, s := range got {
		if s.rev <= tenth {
			t.Errorf("%s was reserved at revision %d, before the tenth small push (revision %d)", s.payload, s.rev, tenth)
		}
		if s.deliveries != 1 {
			t.Errorf("%s delivered %d times", s.payload, s.deliveries)
		}
		if i < 10 {
			n, _ := strconv.Atoi(s.id)
			ids = append(ids, n)
		}
	}
	if !sort.IntsAreSorted(ids) {
		t.Errorf("the small tasks started in the order of ids %v, not in push order", ids)
	}
	if last := got[10]; last.payload != "big" || last.id != pushed["big"] {
		t.Fatalf("the last task started is %+v, want the big one", last)
	}
	var st struct {
		Depth    int `json:"depth"`
		InFlight int `json:"in_flight"`
	}
	var data []byte
	err := testcluster.Eventually(30*time.Second, func() error { // the big task writes it after its log line
		var err error
		if data, err = os.ReadFile(log + ".big-stats"); err == nil {
			err = json.Unmarshal(data, &st)
		}
		return err
	})
	if err != nil || st.Depth != 1 || st.InFlight != 1 {
		t.Fatalf("stats as the big task started (want it alone in the queue): %s %v", data, err)
	}
	if g := gateCLI(t, agents[2], queue); !g.Exists || !g.Open || g.Count != 10 || g.Revision <= tenth {
		t.Fatalf("gate at the end: %+v", g)
	}
}

// Scenario (b): the --after task alone runs until it is acked; its worker
// killed with kill -9, the gate stays closed, the task is delivered again,
// and the gate opens with its ack.
func TestQueueGateAfter(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")
	const queue = "setup"
	log := filepath.Join(t.TempDir(), "started.log")
	release := filepath.Join(t.TempDir(), "release")
	var ids []string
	for _, p := range []string{"shard-1", "migrate", "shard-2"} {
		out, errOut, code := queueCLI(t, a, nil, "queue", "push", queue, p)
		if code != 0 {
			t.Fatal(errOut)
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	if g := gateCLI(t, b, queue, "--after", ids[1]); !g.Exists || g.Open || g.After != ids[1] {
		t.Fatalf("gate --after %s answered %+v", ids[1], g)
	}
	env := gateWorkerEnv(t, a, log, "HOLD=migrate", "HOLD_FILE="+release)
	first := startQueueWorker(t, a, queue, gateWorkerScript, env...)
	got := waitGateLog(t, log, 1)
	if got[0].payload != "migrate" {
		t.Fatalf("the first task started is %+v, want migrate", got[0])
	}
	second := startQueueWorker(t, b, queue, gateWorkerScript, env...)
	wantNothingReserved(t, b, queue, "while the first task runs")

	first.kill() // kill -9 of beacon; its CMD dies with it, its session ends
	got = waitGateLog(t, log, 2)
	if got[1].payload != "migrate" || got[1].deliveries != 2 {
		t.Fatalf("after the kill: %+v, want migrate delivered again", got[1])
	}
	if g := gateCLI(t, a, queue); g.Open {
		t.Fatalf("the gate opened without the first task's ack: %+v", g)
	}
	wantNothingReserved(t, a, queue, "while the first task runs again")
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got = waitGateLog(t, log, 4)
	g := gateCLI(t, a, queue)
	if !g.Open {
		t.Fatalf("gate after the first task's ack: %+v", g)
	}
	for _, s := range got[2:] {
		if s.payload == "migrate" || s.rev <= g.Revision {
			t.Errorf("%+v started before the gate opened (revision %d)", s, g.Revision)
		}
	}
	second.kill()
}

// Scenario (c): flipping a config key opens the gate, and a worker waiting
// on another agent gets the message.
func TestQueueGateKey(t *testing.T) {
	c := testcluster.New(t)
	a, b := memberAndProxy(t, c, "b")
	const queue = "deploys"
	log := filepath.Join(t.TempDir(), "started.log")
	if g := gateCLI(t, a, queue, "--key", "release/go=yes"); g.Open || g.Key == nil || g.Key.Key != "release/go" {
		t.Fatalf("gate --key answered %+v", g)
	}
	if _, errOut, code := queueCLI(t, a, nil, "queue", "push", queue, "deploy-web"); code != 0 {
		t.Fatal(errOut)
	}
	startQueueWorker(t, b, queue, gateWorkerScript, gateWorkerEnv(t, b, log)...)
	if _, errOut, code := queueCLI(t, a, nil, "config", "put", "release/go", "no"); code != 0 {
		t.Fatal(errOut)
	}
	wantNothingReserved(t, b, queue, "with the key at another value")
	out, errOut, code := queueCLI(t, a, nil, "config", "put", "release/go", "yes")
	if code != 0 {
		t.Fatal(errOut)
	}
	var flipped int64
	if _, err := fmt.Sscanf(out, "put release/go at revision %d", &flipped); err != nil {
		t.Fatalf("config put printed %q", out)
	}
	got := waitGateLog(t, log, 1)
	if got[0].payload != "deploy-web" || got[0].rev <= flipped {
		t.Fatalf("started %+v; the key flipped at revision %d", got[0], flipped)
	}

	// Refusals: one line each, with the right code and exit status.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--count", "0"}, 2, "beacon: --count 0: give at least 1"},
		{[]string{"--after", "x1"}, 1, `beacon: invalid argument: after: "x1" is not a message id`},
		{[]string{"--after", "999"}, 1, `beacon: not found: queue "deploys" has no message 999`},
		{[]string{"--key", "/abs=1"}, 1, "beacon: invalid argument: key:"},
		{[]string{"--count", "2", "--open"}, 2, "give one of --count, --after, --key, --open, --close"},
	} {
		_, errOut, code := queueCLI(t, b, nil, append([]string{"queue", "gate", queue}, tc.args...)...)
		if code != tc.code || !strings.HasPrefix(errOut, tc.want) && !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") > 1 {
			t.Errorf("beacon queue gate %v: exit %d, %q; want exit %d, %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	if out, errOut, code := queueCLI(t, b, nil, "queue", "gate", queue); code != 0 || !strings.Contains(out, "open") || !strings.Contains(out, "key release/go=yes") {
		t.Errorf("beacon queue gate %s: exit %d, %s%s", queue, code, out, errOut)
	}
}

// A gate is etcd's, not an agent's: an agent killed and started again
// still holds its queue back, and opens it when the condition comes.
func TestQueueGateRestart(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	const queue = "batch"
	gateCLI(t, agents[1], queue, "--count", "2")
	queueCLI(t, agents[0], nil, "queue", "push", queue, "one")
	wantNothingReserved(t, agents[0], queue, "before the restart")
	ic := testcluster.InitialCluster(agents...)
	for _, a := range agents {
		a.Kill()
	}
	for _, a := range agents {
		a.Start("--initial-cluster", ic)
	}
	for _, a := range agents {
		a.WaitReady(readyWithin)
	}
	_, sdk := queueClient(t, agents[2])
	if g, err := sdk.QueueGate(queueCtx(t), queue); err != nil || !g.Exists || g.Open || g.Count != 2 {
		t.Fatalf("gate after the restart (Go SDK): %v %v", g, err)
	}
	wantNothingReserved(t, agents[0], queue, "after the restart")
	queueCLI(t, agents[2], nil, "queue", "push", queue, "two")
	r := queueReserveCLI(t, agents[0], queue, "--wait", "30s")
	if r.Message.Payload != "one" {
		t.Fatalf("after the second push: %+v", r)
	}
}
