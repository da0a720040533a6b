package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// A careless script reserved a message one-shot (no session, so no lease)
// and never acked it. Once its visibility passes the message is ready
// again (Stats counts it), so a gate --count that counts it must open.
// Before the fix a closed gate reaped no expired reservation, and the
// count left out every message that still had a reservation key: the
// gate never opened and every worker waited for ever.
func TestQueueGateCountsExpiredReservations(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("n1")
	a.Start()
	a.WaitReady(readyWithin)
	const queue = "expired"
	for i := range 3 {
		if _, errOut, code := queueCLI(t, a, nil, "queue", "push", queue, fmt.Sprintf("m%d", i)); code != 0 {
			t.Fatalf("push: %s", errOut)
		}
	}
	if _, errOut, code := queueCLI(t, a, nil, "queue", "reserve", queue, "--visibility", "1s"); code != 0 {
		t.Fatalf("one-shot reserve: %s", errOut)
	}
	if g := gateCLI(t, a, queue, "--count", "3"); g.Open {
		t.Fatalf("gate --count 3 with a message reserved: %+v", g)
	}
	// Stats says when the reservation has expired: 3 ready.
	if err := testcluster.Eventually(30*time.Second, func() error {
		out, errOut, code := queueCLI(t, a, nil, "queue", "stats", queue, "-w", "json")
		var st struct {
			Ready int `json:"ready"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return fmt.Errorf("stats: exit %d, %s%s", code, out, errOut)
		}
		if st.Ready != 3 {
			return fmt.Errorf("%d ready, want 3", st.Ready)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := queueCLI(t, a, nil, "queue", "reserve", queue, "--wait", "30s", "-w", "json")
	if code != 0 {
		t.Fatalf("with 3 messages ready behind gate --count 3, reserve --wait 30s: exit %d, %s%s (gate: %+v)",
			code, out, errOut, gateCLI(t, a, queue))
	}
	if g := gateCLI(t, a, queue); !g.Open {
		t.Fatalf("a message was handed out, and the gate reads %+v", g)
	}
}

// A gate whose condition holds when the first Reserve on an agent starts
// the queue's view opens before that Reserve picks (queue/README.md): a
// Reserve that does not wait gets the message. Before the fix the view's
// opener had not acted yet and the Reserve answered NOT_FOUND "its gate
// is closed, count 3" with three messages ready (every time), and the
// same for a --key gate whose key already held its value.
func TestQueueGateOpensForTheFirstReserve(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("n1")
	a.Start()
	a.WaitReady(readyWithin)
	if _, errOut, code := queueCLI(t, a, nil, "config", "put", "release/ready", "yes"); code != 0 {
		t.Fatalf("config put: %s", errOut)
	}
	for i, cond := range [][]string{{"--count", "3"}, {"--key", "release/ready=yes"}, {"--key", "release/ready"}} {
		queue := fmt.Sprintf("first-%d", i)
		for j := range 3 {
			if _, errOut, code := queueCLI(t, a, nil, "queue", "push", queue, fmt.Sprintf("m%d", j)); code != 0 {
				t.Fatalf("push: %s", errOut)
			}
		}
		if g := gateCLI(t, a, append([]string{queue}, cond...)...); g.Open {
			t.Fatalf("gate %v answered open: %+v", cond, g)
		}
		out, errOut, code := queueCLI(t, a, nil, "queue", "reserve", queue, "--wait", "0")
		if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), "\nm0") {
			t.Errorf("gate %v holding, reserve --wait 0: exit %d, %q %s", cond, code, out, errOut)
		}
	}
	// A condition that does not hold: the Reserve's try fails and it
	// answers at once, with writes elsewhere in etcd since the view's
	// last change (a try that waited for the view to reach etcd's latest
	// revision waited for ever: a write outside the queue never reaches
	// its view).
	const queue = "first-closed"
	if _, errOut, code := queueCLI(t, a, nil, "queue", "push", queue, "m0"); code != 0 {
		t.Fatalf("push: %s", errOut)
	}
	gateCLI(t, a, queue, "--key", "release/ready=no")
	if _, errOut, code := queueCLI(t, a, nil, "config", "put", "elsewhere", "x"); code != 0 {
		t.Fatalf("config put: %s", errOut)
	}
	wantNothingReserved(t, a, queue, "gate --key release/ready=no while it holds yes")
	// And once the key holds the value, the next Reserve gets the message.
	if _, errOut, code := queueCLI(t, a, nil, "config", "put", "release/ready", "no"); code != 0 {
		t.Fatalf("config put: %s", errOut)
	}
	if out, errOut, code := queueCLI(t, a, nil, "queue", "reserve", queue, "--wait", "30s"); code != 0 || !strings.HasSuffix(strings.TrimSpace(out), "\nm0") {
		t.Errorf("gate --key release/ready=no, the key holding no: exit %d, %q %s", code, out, errOut)
	}
}
