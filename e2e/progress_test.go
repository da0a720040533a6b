package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pollProgress asks Stats on the agent of qc every millisecond until the
// in-flight message shows percent p, failing the test after 30 s; it
// returns when it saw it. (testcluster.Eventually backs off to 200 ms
// between tries: too coarse to time a report.)
func pollProgress(t *testing.T, qc beaconpb.QueueClient, q string, p int) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := qc.Stats(queueCtx(t), &beaconpb.QueueStatsRequest{Queue: q, InFlight: true})
		if err == nil && len(s.InFlightMessages) == 1 && s.InFlightMessages[0].Percent != nil && int(*s.InFlightMessages[0].Percent) == p {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d%% never showed: %v %v", p, s, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// stampOf reads a time the worker's script wrote with date +%s%N,
// waiting (bounded) for the script to have written it.
func stampOf(t *testing.T, dir, what string, p int) time.Time {
	t.Helper()
	var ns int64
	err := testcluster.Eventually(30*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s-%d", what, p)))
		if err == nil {
			ns, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(0, ns)
}

// progressStats is `beacon queue stats QUEUE --in-flight -w json`.
type progressStats struct {
	Ready    int `json:"ready"`
	InFlight int `json:"in_flight"`
	Messages []struct {
		ID         string  `json:"id"`
		Node       string  `json:"node"`
		Pid        int     `json:"pid"`
		Age        string  `json:"age"`
		Deliveries int     `json:"deliveries"`
		Percent    *int    `json:"percent"`
		Progress   string  `json:"progress_message"`
		ReservedAt *string `json:"reserved_at"`
	} `json:"in_flight_messages"`
}

// A worker on a proxy reports 10%, 50% and 90% with `beacon progress`
// from its CMD; `beacon queue stats --in-flight` on the member shows each
// value with the worker's node and pid. kill -9 of the worker (the
// beacon process) removes its report and puts its message back at once;
// the dead worker's receipt can then report nothing over the next
// holder's (FAILED_PRECONDITION). The time from a `beacon progress`
// call to the value showing in Stats is measured and printed, not
// asserted.
func TestQueueProgress(t *testing.T) {
	c := testcluster.New(t)
	member, proxy := memberAndProxy(t, c, "w")
	qc, _ := queueClient(t, member)
	const q = "progress"
	if _, errOut, code := queueCLI(t, member, nil, "queue", "push", q, "job"); code != 0 {
		t.Fatalf("push: %s", errOut)
	}
	dir := t.TempDir()
	script := `echo "$BEACON_QUEUE_RECEIPT" > "$DIR/receipt"
for p in 10 50 90; do
  date +%s%N > "$DIR/at-$p"
  beacon progress $p "step $p" || exit 1
  date +%s%N > "$DIR/done-$p"
  until [ -e "$DIR/go-$p" ]; do sleep 0.01; done
done`
	bin := testcluster.Binary(t)
	tmp, path := t.TempDir(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH")
	w := startQueueWorker(t, proxy, q, script, "DIR="+dir, path, "TMPDIR="+tmp)
	pid := w.cmd.Process.Pid

	for _, p := range []int{10, 50, 90} {
		// Through gRPC every millisecond (bounded), for the latency...
		seen := pollProgress(t, qc, q, p)
		started, returned := stampOf(t, dir, "at", p), stampOf(t, dir, "done", p)
		t.Logf("%d%%: `beacon progress` started → visible in Stats on another agent: %s (the command itself took %s, its process start included)",
			p, seen.Sub(started).Round(100*time.Microsecond), returned.Sub(started).Round(100*time.Microsecond))
		// ... and as the CLI prints it.
		out, errOut, code := queueCLI(t, member, nil, "queue", "stats", q, "--in-flight", "-w", "json")
		if code != 0 {
			t.Fatalf("stats --in-flight: %s", errOut)
		}
		var st progressStats
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("stats --in-flight -w json: %v\n%s", err, out)
		}
		if len(st.Messages) != 1 || st.InFlight != 1 {
			t.Fatalf("stats --in-flight: %s", out)
		}
		m := st.Messages[0]
		if m.Percent == nil || *m.Percent != p || m.Progress != fmt.Sprintf("step %d", p) || m.Node != "w" || m.Pid != pid ||
			m.Deliveries != 1 || m.ReservedAt == nil || m.Age == "0s" {
			t.Fatalf("stats --in-flight after %d%%: %s; want node w, pid %d", p, out, pid)
		}
		if p != 90 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("go-%d", p)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	table, _, code := queueCLI(t, member, nil, "queue", "stats", q, "--in-flight")
	if code != 0 || !strings.Contains(table, "90%") || !strings.Contains(table, `"step 90"`) || !strings.Contains(table, strconv.Itoa(pid)) {
		t.Fatalf("stats --in-flight table:\n%s", table)
	}

	killed := time.Now()
	w.kill()
	etcd := member.Client()
	err := testcluster.Eventually(30*time.Second, func() error {
		s := queueStats(t, qc, q)
		resp, err := etcd.Get(queueCtx(t), "/beacon/queues/"+q+"/status/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if s.Ready != 1 || s.InFlight != 0 || resp.Count != 0 {
			return fmt.Errorf("ready %d, in flight %d, progress records %d", s.Ready, s.InFlight, resp.Count)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after kill -9 of the worker: %v", err)
	}
	t.Logf("kill -9 of the worker → its message ready and its report gone: within %s (polled with backoff)", time.Since(killed).Round(time.Millisecond))

	stale, err := os.ReadFile(filepath.Join(dir, "receipt"))
	if err != nil {
		t.Fatal(err)
	}
	next := queueReserveCLI(t, member, q, "--visibility", "1h")
	if next.Message.Deliveries != 2 {
		t.Fatalf("redelivered with %d deliveries, want 2", next.Message.Deliveries)
	}
	if _, err := qc.Progress(queueCtx(t), &beaconpb.QueueProgressRequest{Receipt: next.Receipt, Percent: 5, Message: "new"}); err != nil {
		t.Fatal(err)
	}
	_, err = qc.Progress(queueCtx(t), &beaconpb.QueueProgressRequest{Receipt: strings.TrimSpace(string(stale)), Percent: 99, Message: "stale"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("the killed worker's receipt reporting: %v; want FailedPrecondition", err)
	}
	s, err := qc.Stats(queueCtx(t), &beaconpb.QueueStatsRequest{Queue: q, InFlight: true})
	if err != nil || len(s.InFlightMessages) != 1 || s.InFlightMessages[0].GetPercent() != 5 || s.InFlightMessages[0].ProgressMessage != "new" {
		t.Fatalf("after the stale report: %v %v; want the new holder's 5%%", s, err)
	}

	// The killed worker could not remove its socket's directory; the
	// next worker to start on the host does.
	killedDirs := filepath.Join(tmp, fmt.Sprintf("beacon-progress-%d-*", pid))
	if left, _ := filepath.Glob(killedDirs); len(left) != 1 {
		t.Fatalf("the killed worker left %v; want its one socket directory", left)
	}
	worker := func(tmpdir, script string) (string, error) {
		if _, errOut, code := queueCLI(t, member, nil, "queue", "push", q, "another job"); code != 0 {
			t.Fatalf("push: %s", errOut)
		}
		cmd := exec.Command(bin, "queue", "reserve", q, "--agent", member.APIAddr, "--", "sh", "-c", script)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmpdir, path)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := worker(tmp, "beacon progress 100 done"); err != nil {
		t.Fatalf("the next worker: %v\n%s", err, out)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "beacon-progress-*")); len(left) != 0 {
		t.Fatalf("after the next worker: %v left; want none", left)
	}

	// Without a socket for the reports (here: no temporary directory),
	// the work goes on without them, and says so.
	out, err := worker("/nonexistent", `beacon progress 50; echo "progress exit $?"`)
	if err != nil || !strings.Contains(out, "no progress reports") || !strings.Contains(out, "progress exit 2") {
		t.Fatalf("a worker without its socket: %v\n%s", err, out)
	}
}

// `beacon progress` outside a worker, or with a bad PERCENT or MESSAGE,
// is a usage error (exit 2) of one line saying what to do.
func TestQueueProgressUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"progress", "50", "copying"}, "run it from the CMD of `beacon queue reserve QUEUE -- CMD`"},
		{[]string{"progress", "150"}, `PERCENT "150" is not a whole number from 0 to 100`},
		{[]string{"progress", "half"}, `PERCENT "half" is not a whole number from 0 to 100`},
		{[]string{"progress", "50", strings.Repeat("x", 1025)}, "message: 1025 bytes, over the limit of 1024"},
	} {
		cmd := exec.Command(testcluster.Binary(t), c.args...)
		cmd.Env = append(os.Environ(), "BEACON_PROGRESS=")
		out, err := cmd.CombinedOutput()
		line := strings.TrimSpace(string(out))
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(line, c.want) || strings.Count(line, "\n") != 0 {
			t.Errorf("beacon %.40s: exit %d (%v), %q; want exit 2 and one line saying %q", strings.Join(c.args, " "), code, err, line, c.want)
		}
	}
}
