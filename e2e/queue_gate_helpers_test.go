package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// gateWorkerScript logs each task a worker starts as "REV ID DELIVERIES
// PAYLOAD" (REV: the revision that made the reservation, the receipt's
// last field), and for the task named in $HOLD waits for the file
// $HOLD_FILE (at most 60 s) before it ends; the big task also saves the
// queue's stats as it starts.
const gateWorkerScript = `p=$(cat)
echo "${BEACON_QUEUE_RECEIPT##*/} $BEACON_QUEUE_MESSAGE_ID $BEACON_QUEUE_DELIVERIES $p" >> "$LOG"
if [ "$p" = big ]; then "$BEACON" queue stats "$BEACON_QUEUE" -w json > "$LOG.big-stats"; fi
if [ -n "$HOLD" ] && [ "$p" = "$HOLD" ]; then
  i=0; while [ ! -f "$HOLD_FILE" ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done
fi
sleep 0.05`

// gateStart is a line of a worker's log.
type gateStart struct {
	rev        int64
	id         string
	deliveries int
	payload    string
}

func gateLog(t *testing.T, path string) []gateStart {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []gateStart
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 4 {
			continue
		}
		rev, _ := strconv.ParseInt(f[0], 10, 64)
		d, _ := strconv.Atoi(f[2])
		out = append(out, gateStart{rev: rev, id: f[1], deliveries: d, payload: f[3]})
	}
	return out
}

// waitGateLog waits (60 s at most) until the log has n lines.
func waitGateLog(t *testing.T, path string, n int) []gateStart {
	t.Helper()
	var got []gateStart
	if err := testcluster.Eventually(60*time.Second, func() error {
		if got = gateLog(t, path); len(got) < n {
			return fmt.Errorf("%d tasks started, want %d", len(got), n)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v: %+v", err, got)
	}
	return got
}

func gateWorkerEnv(t *testing.T, a *testcluster.Agent, log string, more ...string) []string {
	return append([]string{"LOG=" + log, "BEACON=" + testcluster.Binary(t), "BEACON_AGENT=" + a.APIAddr}, more...)
}

// gateJSON is `beacon queue gate Q -w json`.
type gateJSON struct {
	Exists   bool   `json:"exists"`
	Open     bool   `json:"open"`
	Count    int    `json:"count"`
	After    string `json:"after"`
	Revision int64  `json:"revision"`
	Key      *struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"key"`
}

func gateCLI(t *testing.T, a *testcluster.Agent, args ...string) gateJSON {
	t.Helper()
	out, errOut, code := queueCLI(t, a, nil, append([]string{"queue", "gate", "-w", "json"}, args...)...)
	var g gateJSON
	if code != 0 || json.Unmarshal([]byte(out), &g) != nil {
		t.Fatalf("beacon queue gate %v: exit %d, %s%s", args, code, out, errOut)
	}
	return g
}

// seqRevision is the revision of the queue's last push (its seq key).
func seqRevision(t *testing.T, a *testcluster.Agent, queue string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := a.Client().Get(ctx, "/beacon/queues/"+queue+"/seq")
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("reading %s's seq key: %v", queue, err)
	}
	return resp.Kvs[0].ModRevision
}

// wantNothingReserved: a reserve that does not wait finds nothing.
func wantNothingReserved(t *testing.T, a *testcluster.Agent, queue, when string) {
	t.Helper()
	out, errOut, code := queueCLI(t, a, nil, "queue", "reserve", queue, "--wait", "0")
	if code != 1 || !strings.Contains(errOut, "gate is closed") {
		t.Fatalf("%s: beacon queue reserve %s --wait 0: exit %d, %s%s", when, queue, code, out, errOut)
	}
}
