package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestForceLeave: three voters, n3 killed for good (kill -9). A host that
// joins meanwhile waits, and says once, at WARN, that n3 does not answer
// and how to remove it. `beacon force-leave` refuses (one line, exit 1,
// nothing changed) a live member, an unknown name, the agent's own name
// and a proxy; then it removes n3 — while the join waits, so the join
// holds no lock force-leave needs — and the joiner becomes a voter. With
// two of the three voters then dead, a force-leave is refused as
// unavailable: no quorum could agree to it.
func TestForceLeave(t *testing.T) {
	c := testcluster.New(t)
	ms := startStatic(t, c, 3)
	n1, n2, n3 := ms[0], ms[1], ms[2]
	p := c.Host("p1")
	p.Start("--role", "proxy", "--join", n1.ClientURL)
	p.WaitReady(readyWithin)

	n3.Kill()
	// A write through n1 needs n1 and n2 to follow one live leader: after
	// it, neither still follows n3 if n3 led.
	if err := testcluster.Eventually(readyWithin, func() error { return putVia(t, n1, "/after-kill", "x") }); err != nil {
		t.Fatalf("no write through n1 after n3 died: %v", err)
	}

	// The replacement starts while n3 is listed: it waits, and says why.
	j := c.Host("j1")
	j.Start("--join", n2.ClientURL)
	const warnWant = "beacon force-leave n3"
	err := testcluster.Eventually(readyWithin, func() error {
		if j.Exited() {
			return fmt.Errorf("j1 exited: %s", lastLine(j.Log()))
		}
		if !strings.Contains(j.Log(), warnWant) {
			return fmt.Errorf("j1 has not said what it waits for")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("join with a dead voter listed: %v\n%s", err, j.Log())
	}

	refusals := []struct {
		args     []string
		code     int
		want     []string
		whatFor  string
		viaProxy bool
	}{
		{[]string{"force-leave", "n2"}, 1, []string{"failed precondition", "n2", "answers", "beacon leave"}, "a live member", false},
		{[]string{"force-leave", "nosuch"}, 1, []string{"not found", "nosuch"}, "an unknown name", false},
		{[]string{"force-leave", "n1"}, 1, []string{"invalid argument", "n1", "beacon leave"}, "the agent's own name", false},
		{[]string{"force-leave", "p1"}, 1, []string{"failed precondition", "p1", "proxy", "not an etcd member", "expires by itself"}, "a proxy", false},
		{[]string{"force-leave", "n1"}, 1, []string{"failed precondition", "n1", "answers"}, "a live member, asked through a proxy", true},
		{[]string{"force-leave"}, 2, []string{"force-leave", "one member"}, "no name", false},
	}
	for _, r := range refusals {
		via := n1
		if r.viaProxy {
			via = p
		}
		out, stderr, err := via.CLI(r.args...)
		var ee *exec.ExitError
		code := 0
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		msg := strings.TrimSpace(stderr)
		if err == nil || code != r.code {
			t.Errorf("%s: %v: exit %d (%v), want %d; stdout %q stderr %q", r.whatFor, r.args, code, err, r.code, out, stderr)
			continue
		}
		if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "beacon: ") {
			t.Errorf("%s: want one line on stderr, got %q", r.whatFor, stderr)
		}
		for _, w := range r.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", r.whatFor, msg, w)
			}
		}
	}
	// Nothing changed: n3 is still listed, the others still serve.
	waitMembers(t, []*testcluster.Agent{n1, n2, p}, func(m []testcluster.Member) error {
		if got := roles(m); got != "n1:voter n2:voter n3:voter p1:proxy" {
			return fmt.Errorf("want the 3 voters and the proxy untouched, have %s", got)
		}
		return nil
	})

	// The dead one goes, through the proxy's agent, while j1 waits.
	out, stderr, err := p.CLI("force-leave", "n3")
	if err != nil {
		t.Fatalf("beacon force-leave n3: %v: %s", err, stderr)
	}
	if !strings.Contains(out, "removed n3") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("beacon force-leave n3 printed %q", out)
	}
	t.Logf("force-leave n3: %s", strings.TrimSpace(out))

	// The waiting join goes through: j1 is a voter.
	j.WaitReady(readyWithin)
	got := waitMembers(t, []*testcluster.Agent{n1, n2, j, p}, func(m []testcluster.Member) error {
		if got := roles(m); got != "j1:voter n1:voter n2:voter p1:proxy" {
			return fmt.Errorf("want j1 to have replaced n3 as a voter, have %s", got)
		}
		return nil
	})
	t.Logf("membership: %s", got)

	// The wait was told once, at WARN; etcd's refusal was not repeated.
	log := j.Log()
	var warns []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, warnWant) {
			warns = append(warns, l)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "\tWARN\t") || !strings.Contains(warns[0], "n3") {
		t.Errorf("want one WARN line naming n3 and %q, have %d:\n%s", warnWant, len(warns), strings.Join(warns, "\n"))
	} else {
		t.Logf("j1 said: %s", warns[0])
	}
	if n := strings.Count(log, "cluster not ready for a new member"); n > 1 {
		t.Errorf("the join repeated \"cluster not ready\" %d times:\n%s", n, log)
	}

	// Again now that it is gone: not found.
	_, stderr, err = n1.CLI("force-leave", "n3")
	if err == nil || !strings.Contains(stderr, "not found") {
		t.Errorf("force-leave of a removed member: %v %q", err, stderr)
	}

	// Two of the three voters die: removing one would need a quorum the
	// cluster no longer has. Refused at once, unavailable, naming both.
	n2.Kill()
	j.Kill()
	_, stderr, err = n1.CLI("force-leave", "j1", "--call-timeout", "20s")
	msg := strings.TrimSpace(stderr)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Contains(msg, "\n") ||
		!strings.Contains(msg, "unavailable") || !strings.Contains(msg, "j1") || !strings.Contains(msg, "n2") {
		t.Errorf("force-leave without quorum: %v: want one line, unavailable, naming j1 and n2: %q", err, msg)
	}
	ms2, err := n1.Members()
	if err != nil {
		t.Fatal(err)
	}
	if got := countRole(ms2, "voter"); got != 3 {
		t.Errorf("force-leave without quorum changed the members: %s", roles(ms2))
	}
}
