package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// maxStartLines is what an agent may print at the default level up to and
// including "agent ready" (issue #10: a start is a handful of lines).
const maxStartLines = 15

// startLines are an agent's log lines up to "agent ready".
func startLines(t *testing.T, a *testcluster.Agent) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(a.Log(), "\n") {
		if l == "" {
			continue
		}
		out = append(out, l)
		if strings.Contains(l, "agent ready") {
			return out
		}
	}
	t.Fatalf("%s never logged \"agent ready\":\n%s", a.Name, a.Log())
	return nil
}

// linesAt are the log lines at a level (zap's console encoding puts it
// between tabs).
func linesAt(log, level string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "\t"+level+"\t") {
			out = append(out, l)
		}
	}
	return out
}

// TestLogsQuiet: at the default level a member's start and a normal join
// say what happened in a handful of lines, and nothing at ERROR: etcd's
// own chatter (60-100 lines a start) and the leader's "rejecting
// promote learner" ERROR of every join are kept at debug.
func TestLogsQuiet(t *testing.T) {
	c := testcluster.New(t)
	n1 := c.Host("n1")
	n1.Start()
	n1.WaitReady(readyWithin)
	var agents = []*testcluster.Agent{n1}
	for i := 2; i <= 4; i++ { // two more voters, then a proxy
		a := c.Host(fmt.Sprintf("n%d", i))
		a.Start("--role", "auto", "--join", n1.ClientURL)
		a.WaitReady(readyWithin)
		agents = append(agents, a)
	}
	waitMembers(t, agents, func(ms []testcluster.Member) error {
		if v, p := countRole(ms, "voter"), countRole(ms, "proxy"); v != 3 || p != 1 {
			return fmt.Errorf("want 3 voters and a proxy, have %s", roles(ms))
		}
		return nil
	})
	for _, a := range agents[1:3] {
		// A joined voter recorded its membership: without the file its
		// next start would take its data for an interrupted join's.
		if _, err := os.Stat(filepath.Join(a.DataDir, "beacon-state.json")); err != nil {
			t.Errorf("%s joined as a voter but recorded no state: %v", a.Name, err)
		}
	}
	for _, a := range agents {
		if lines := startLines(t, a); len(lines) > maxStartLines {
			t.Errorf("%s printed %d lines before it was ready, want at most %d:\n%s", a.Name, len(lines), maxStartLines, strings.Join(lines, "\n"))
		}
		// No ERROR. (WARN is not judged: on a loaded machine etcd rightly
		// warns of slow disks and late heartbeats.)
		if l := linesAt(a.Log(), "ERROR"); len(l) > 0 {
			t.Errorf("%s logged %d lines at ERROR in a normal start and join:\n%s", a.Name, len(l), strings.Join(l, "\n"))
		}
	}
}
