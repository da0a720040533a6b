package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestLeave: `beacon leave` on one voter of three leaves two voters and a
// working cluster; the agent that left stops, and will not resume its data.
func TestLeave(t *testing.T) {
	c := testcluster.New(t)
	ms := startStatic(t, c, 3)
	leaver := ms[2]

	out, stderr, err := leaver.CLI("leave")
	if err != nil {
		t.Fatalf("beacon leave: %v: %s", err, stderr)
	}
	if !strings.Contains(out, "n3 left the cluster") {
		t.Fatalf("beacon leave printed %q", out)
	}
	if err := leaver.WaitExit(15 * time.Second); err != nil {
		t.Fatalf("agent that left exited with %v\n%s", err, leaver.Log())
	}
	waitMembers(t, ms[:2], func(m []testcluster.Member) error {
		if len(m) != 2 || countRole(m, "voter") != 2 {
			return fmt.Errorf("want 2 voters")
		}
		return nil
	})
	for _, a := range ms[:2] {
		if err := putVia(t, a, "/after-leave/"+a.Name, "x"); err != nil {
			t.Fatalf("write through %s after the leave: %v", a.Name, err)
		}
	}

	// Its data dir is spent: a restart says so in one line.
	leaver.Start("--initial-cluster", testcluster.InitialCluster(ms...))
	err = leaver.WaitExit(30 * time.Second)
	last := lastLine(leaver.Log())
	if err == nil || !strings.Contains(last, "left the cluster") || !strings.Contains(last, "--join") {
		t.Fatalf("restart after leave: exit %v, last line %q", err, last)
	}

	// Deleting the data dir and joining brings it back as a new voter.
	leaver.DataDir += "-new"
	leaver.Start("--join", ms[0].ClientURL)
	leaver.WaitReady(readyWithin)
	waitMembers(t, ms, func(m []testcluster.Member) error {
		if countRole(m, "voter") != 3 {
			return fmt.Errorf("want 3 voters again")
		}
		return nil
	})
}

// TestLeaveRefusedWithoutQuorum: with one of three voters down, a second
// one may not leave: the remaining two would hold one healthy voter.
func TestLeaveRefusedWithoutQuorum(t *testing.T) {
	c := testcluster.New(t)
	ms := startStatic(t, c, 3)
	ms[2].Kill()

	_, stderr, err := ms[1].CLI("leave")
	if err == nil {
		t.Fatal("beacon leave succeeded with a voter down")
	}
	msg := strings.TrimSpace(stderr)
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "refusing to leave") || !strings.Contains(msg, "n3") ||
		!strings.Contains(msg, "failed precondition") {
		t.Fatalf("refusal should be one line naming n3: %q", msg)
	}
	// Still serving after refusing: it answers a full status round trip.
	if _, stderr, err := ms[1].CLI("status"); err != nil || ms[1].Exited() {
		t.Fatalf("the agent should keep running after refusing to leave: %v %s", err, stderr)
	}
	// Nothing changed: still three members, and the two live ones work.
	waitMembers(t, ms[:2], func(m []testcluster.Member) error {
		if countRole(m, "voter") != 3 {
			return fmt.Errorf("want the 3 voters untouched")
		}
		return nil
	})
	if err := putVia(t, ms[1], "/still", "works"); err != nil {
		t.Fatal(err)
	}
}

// TestLeaveOnTerminate: SIGTERM with leave-on-terminate removes the voter;
// a proxy's SIGTERM just takes its record away.
func TestLeaveOnTerminate(t *testing.T) {
	c := testcluster.New(t)
	// A TTL longer than the test: only the agents' own revokes can take
	// their records away in time.
	ms := startStatic(t, c, 3, "--leave-on-terminate", "--node-ttl", "1h")
	p := c.Host("p1")
	p.Start("--role", "proxy", "--join", ms[0].ClientURL, "--node-ttl", "1h")
	p.WaitReady(readyWithin)

	if err := ms[0].Stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, ms[0].Log())
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("proxy SIGTERM: %v", err)
	}
	waitMembers(t, ms[1:], func(m []testcluster.Member) error {
		if roles(m) != "n2:voter n3:voter" {
			return fmt.Errorf("want n2 and n3 only")
		}
		return nil
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
