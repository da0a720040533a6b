package faults

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// membership workload helpers: writes through the CLI, and waiting for
// every agent to report one membership.

// configWrite puts a config key through x's agent and records the outcome.
func configWrite(ctx context.Context, rep *Report, x *Host, key string) Result {
	r := x.Run(ctx, "config", "put", key, x.Name, "--call-timeout", "5s")
	rep.Record("write", r.Outcome())
	return r
}

// roles summarises a member list as sorted "name:role" words, with a "!"
// after agents whose record is missing (no agent alive behind it).
func roles(ms []testcluster.Member) string {
	var out []string
	for _, m := range ms {
		s := m.Name + ":" + m.Role
		if !m.AgentAlive {
			s += "!"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// waitMembers waits until every host's `beacon members` says want (as
// roles gives it; without the "!" marks when want has none and anyAlive
// is set); it returns how long that took, or the last difference.
func waitMembers(ctx context.Context, rep *Report, hosts []*Host, want string, bound time.Duration, anyAlive ...bool) (time.Duration, error) {
	start := time.Now()
	err := testcluster.Eventually(bound, func() error {
		for _, x := range hosts {
			ms, err := x.Members(ctx)
			rep.Record("members", errOutcome(err))
			if err != nil {
				return err
			}
			got := roles(ms)
			if len(anyAlive) > 0 && anyAlive[0] {
				got = strings.ReplaceAll(got, "!", "")
			}
			if got != want {
				return fmt.Errorf("%s reports %q, want %q", x, got, want)
			}
		}
		return nil
	})
	return time.Since(start), err
}

func errOutcome(err error) Outcome {
	if err == nil {
		return OK
	}
	return Failed
}

// TestMembershipReplaceDeadVoter: a voter is killed for good (kill -9, its
// host never comes back). The two left keep quorum and serve writes. A new
// host starts with --join: etcd adds no member, not even a learner, while
// a voter is down, so the join waits, saying once at WARN which voter and
// how to remove it, until the operator removes the dead member (`beacon
// force-leave n1` on a live agent, as that message advises); then it is
// added, caught up and promoted. Then another original voter dies, and
// the cluster still has a quorum — which only the newcomer's vote gives.
func TestMembershipReplaceDeadVoter(t *testing.T) {
	ctx := t.Context()
	h := New(t)
	vs, ps := h.StartCluster(ctx, 3, 1)
	rep := h.NewReport("membership-replace")
	defer rep.Finish(t)
	n1, n2, n3, p1 := vs[0], vs[1], vs[2], ps[0]

	if _, err := h.Inject(ctx, KillAgent(n1)); err != nil { // never healed: gone for good
		t.Fatal(err)
	}
	killAt := time.Now()
	writesEverywhere(ctx, rep, []*Host{n2, n3, p1}, "after-kill")
	rep.Measure("kill -9 of a voter → a write through every other agent", time.Since(killAt), 20*time.Second)

	// The replacement starts joining while the dead voter is listed.
	n4 := h.AddHost("n4")
	if err := n4.StartAgent(ctx, "--join", n2.ClientURL); err != nil {
		t.Fatal(err)
	}
	err := testcluster.Eventually(30*time.Second, func() error {
		if n4.Agent().Exited() {
			return fmt.Errorf("n4 exited: %s", lastStderrLine(n4.AgentLog()))
		}
		if l := waitWarning(n4.AgentLog()); l == "" || !strings.Contains(l, "unhealthy cluster") {
			return fmt.Errorf("n4 not waiting on the dead voter yet (no WARN naming n1 and %q)", forceLeaveN1)
		}
		return nil
	})
	if err != nil {
		rep.Anomaly("join with a dead voter listed: %v", err)
	}

	// Remove the dead member: the join goes through.
	ms, err := n2.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ms, func(m testcluster.Member) bool { return m.Name == "n1" }) {
		t.Fatalf("n1 not listed: %s", roles(ms))
	}
	r := n2.Run(ctx, "force-leave", "n1", "--call-timeout", "20s")
	rep.Record("force-leave", r.Outcome())
	if !r.OK() {
		t.Fatalf("beacon force-leave n1: %s", r)
	}
	rep.Note("force-leave n1 on n2: %s", strings.TrimSpace(r.Stdout))
	removedAt := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = n4.WaitReady(rctx)
	cancel()
	rep.Record("join", errOutcome(err))
	if err != nil {
		t.Fatalf("join after the dead voter was removed: %v", err)
	}
	rep.Measure("dead voter removed → the waiting join is promoted and ready", time.Since(removedAt), 30*time.Second)
	live := []*Host{n2, n3, n4, p1}
	if _, err := waitMembers(ctx, rep, live, "n2:voter n3:voter n4:voter p1:proxy", 30*time.Second); err != nil {
		rep.Anomaly("after the replacement: %v", err)
	}
	if n := strings.Count(n4.AgentLog(), forceLeaveN1); n != 1 {
		rep.Anomaly("n4 told how to end its wait %d times, want once at WARN", n)
	}
	st := n4.Run(ctx, "status", "--call-timeout", "5s")
	rep.Record("status", st.Outcome())
	if !st.OK() || !strings.Contains(st.Stdout, "quorum yes (3/3 voters healthy)") {
		rep.Anomaly("status on the newcomer: %s", st)
	}

	// n2 dies too: n3 and n4 are two of three voters.
	if _, err := h.Inject(ctx, KillAgent(n2)); err != nil {
		t.Fatal(err)
	}
	killAt = time.Now()
	writesEverywhere(ctx, rep, []*Host{n3, n4, p1}, "after-second-kill")
	rep.Measure("second kill -9 → a write through every other agent (quorum n3+n4)", time.Since(killAt), 20*time.Second)
}

// forceLeaveN1 is what a join waiting on the dead n1 advises.
const forceLeaveN1 = "beacon force-leave n1"

// waitWarning is the WARN line of an agent's log that names the dead
// voter n1 and the command that removes it, or "".
func waitWarning(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "\tWARN\t") && strings.Contains(l, forceLeaveN1) && strings.Contains(l, `"n1"`) {
			return l
		}
	}
	return ""
}

// writesEverywhere writes through each host until it works (bounded);
// one that never works is an anomaly.
func writesEverywhere(ctx context.Context, rep *Report, hosts []*Host, phase string) {
	for _, x := range hosts {
		err := testcluster.Eventually(30*time.Second, func() error {
			if r := configWrite(ctx, rep, x, "faults/"+phase+"/"+x.Name); !r.OK() {
				return fmt.Errorf("%s", r.Line())
			}
			return nil
		})
		if err != nil {
			rep.Anomaly("%s: no write through %s: %v", phase, x, err)
		}
	}
}

// TestLeaveRefusedDuringPartition: with n3 cut off, `beacon leave` on n1
// would leave n2 and an unreachable n3 — no quorum — so it is refused with
// one clear line, and n1 keeps running as a voter. `beacon leave` on the
// isolated n3 cannot be agreed either: it fails in one line and n3 stays.
// After the heal the same leave on n3 succeeds (the refusals came from the
// partition, not from the command).
func TestLeaveRefusedDuringPartition(t *testing.T) {
	ctx := t.Context()
	h := New(t, WithAgentArgs("--node-ttl", nodeTTL.String()))
	vs, ps := h.StartCluster(ctx, 3, 1)
	rep := h.NewReport("membership-leave")
	defer rep.Finish(t)
	n1, n2, n3, p1 := vs[0], vs[1], vs[2], ps[0]
	everyone := "n1:voter n2:voter n3:voter p1:proxy"

	cut, err := h.Inject(ctx, Isolate(n3))
	if err != nil {
		t.Fatal(err)
	}
	// Both at once: neither waits for the other's answer.
	n3done := make(chan Result, 1)
	go func() { n3done <- n3.Run(ctx, "leave", "--call-timeout", "8s") }()
	r := n1.Run(ctx, "leave", "--call-timeout", "20s")
	rep.Record("leave", r.Outcome())
	msg := strings.TrimSpace(r.Stderr)
	t.Logf("leave on n1 with n3 cut off: exit %d after %s: %s", r.Code, r.End.Sub(r.Start).Round(time.Millisecond), msg)
	rep.Measure("leave on n1 refused", r.End.Sub(r.Start), 15*time.Second)
	switch {
	case r.OK():
		rep.Anomaly("beacon leave on n1 succeeded with n3 cut off: quorum lost (%s)", strings.TrimSpace(r.Stdout))
	case strings.Contains(msg, "\n") || !strings.Contains(msg, "refusing to leave") || !strings.Contains(msg, "n3") ||
		!strings.Contains(msg, "failed precondition"):
		rep.Anomaly("refusal should be one line naming n3 with failed precondition: %q", msg)
	}
	r = <-n3done
	rep.Record("leave", r.Outcome())
	msg = strings.TrimSpace(r.Stderr)
	t.Logf("leave on the isolated n3: exit %d after %s: %s", r.Code, r.End.Sub(r.Start).Round(time.Millisecond), msg)
	rep.Note("leave on the isolated n3: %s after %s", msg, r.End.Sub(r.Start).Round(time.Millisecond))
	switch {
	case r.OK():
		rep.Anomaly("beacon leave on the isolated n3 succeeded: %s", strings.TrimSpace(r.Stdout))
	case strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "beacon: "):
		rep.Anomaly("leave on the isolated n3 should fail in one line: %q", msg)
	}
	for _, x := range []*Host{n1, n3} {
		if x.Agent().Exited() {
			rep.Anomaly("%s's agent stopped after its leave was refused: %s", x, tail(x.AgentLog(), 3))
		}
	}
	// Still three voters (n3's record may have expired with its lease).
	if _, err := waitMembers(ctx, rep, []*Host{n1, n2, p1}, everyone, 10*time.Second, true); err != nil {
		rep.Anomaly("majority side after the refused leaves: %v", err)
	}
	if r := configWrite(ctx, rep, n1, "faults/after-refusal"); !r.OK() {
		rep.Anomaly("write through n1 after its refused leave: %s", r.Line())
	}

	healAt := time.Now()
	if err := cut.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := waitMembers(ctx, rep, []*Host{n1, n2, n3, p1}, everyone, 30*time.Second); err != nil {
		rep.Anomaly("after the heal: %v", err)
	} else {
		rep.Measure("heal → every agent lists the three voters, each alive", time.Since(healAt), 20*time.Second)
	}

	// Now n3 may leave.
	err = testcluster.Eventually(30*time.Second, func() error {
		r := n3.Run(ctx, "leave", "--call-timeout", "20s")
		rep.Record("leave", r.Outcome())
		if !r.OK() {
			return fmt.Errorf("%s", r.Line())
		}
		return nil
	})
	if err != nil {
		rep.Anomaly("leave on n3 after the heal: %v", err)
	} else {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if err := n3.Agent().Wait(wctx); err != nil {
			rep.Anomaly("n3's agent after leaving: %v", err)
		}
		cancel()
		if _, err := waitMembers(ctx, rep, []*Host{n1, n2, p1}, "n1:voter n2:voter p1:proxy", 20*time.Second); err != nil {
			rep.Anomaly("after n3 left: %v", err)
		}
	}
}

// TestDuplicateNodeNameRefused: a second agent that joins with a node
// name already in use must be refused with one line, and the running
// agent keeps its membership: listed, alive, and <name>.node.beacon
// answered with its address by every agent, checked continuously for a
// node TTL and a second after the impostor is gone. Each case uses a fresh data dir on a spare host.
//
// Known to fail today for a proxy taking a voter's name: the duplicate is
// accepted, and when it stops, the real agent disappears from `beacon
// members` and from DNS for good (its node record was overwritten, then
// deleted with the impostor's lease). The agent side is being fixed.
func TestDuplicateNodeNameRefused(t *testing.T) {
	ctx := t.Context()
	const ttl = 2 * time.Second
	h := New(t, WithAgentArgs("--node-ttl", ttl.String()))
	vs, ps := h.StartCluster(ctx, 3, 1)
	spare := h.AddHost("spare")
	hosts := append(append([]*Host{}, vs...), ps...)
	// The fleet first settles: every agent answers every node. An agent
	// is ready before the others' catalogs have its node record (a check
	// 0.1 s after the last start once found n3 without n2's), which is
	// not what the cases below are about.
	if err := testcluster.Eventually(20*time.Second, func() error {
		for _, real := range hosts {
			role := "voter"
			if slices.Contains(ps, real) {
				role = "proxy"
			}
			if err := keepsMembership(ctx, vs[0], hosts, real, role); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("the fleet did not settle: %v", err)
	}

	cases := []struct {
		name  string
		real  *Host
		extra []string
	}{
		{"member-named-like-voter", vs[1], nil},
		{"proxy-named-like-voter", vs[1], []string{"--role", "proxy"}},
		{"member-named-like-proxy", ps[0], nil},
		{"proxy-named-like-proxy", ps[0], []string{"--role", "proxy"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := h.NewReport("duplicate-name/" + c.name)
			defer rep.Finish(t)
			args := append([]string{"--name", c.real.Name, "--data-dir", fmt.Sprintf("%s/dup%d", spare.Dir, i),
				"--client-url", spare.ClientURL, "--peer-url", spare.PeerURL, "--node-ttl", ttl.String(),
				"--join", vs[0].ClientURL}, c.extra...)
			if err := spare.StartAgentWith(ctx, args...); err != nil {
				t.Fatal(err)
			}
			dup := spare.Agent()
			// Refused: it exits non-zero. Accepted: it becomes ready.
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			readyErr := spare.WaitReady(wctx)
			cancel()
			if readyErr == nil {
				rep.Record("duplicate-join", OK)
				rep.Anomaly("a second agent named %s (on %s) was accepted and became ready", c.real.Name, spare.IP)
				_ = dup.Stop(15 * time.Second) // its stop is what takes the real agent's record away
			} else {
				rep.Record("duplicate-join", Failed)
				line := lastStderrLine(dup.Stderr())
				t.Logf("refused: exit %d: %s", dup.ExitCode(), line)
				if dup.ExitCode() <= 0 || !strings.HasPrefix(line, "beacon: ") || !strings.Contains(line, c.real.Name) {
					rep.Anomaly("the duplicate should exit non-zero with one line naming %s: exit %d, %q", c.real.Name, dup.ExitCode(), line)
				}
			}

			// The real agent keeps its membership, continuously.
			role := "voter"
			if slices.Contains(ps, c.real) {
				role = "proxy"
			}
			checkUntil := time.Now().Add(ttl + time.Second)
			checks := 0
			for time.Now().Before(checkUntil) || checks < 3 {
				checks++
				if err := keepsMembership(ctx, vs[0], hosts, c.real, role); err != nil {
					rep.Anomaly("%v", err)
				}
				rep.Record("membership-check", OK)
				time.Sleep(300 * time.Millisecond)
			}
			if c.real.Agent().Exited() {
				rep.Anomaly("the real %s's agent exited: %s", c.real, tail(c.real.AgentLog(), 3))
			}
		})
	}
}

// keepsMembership: asked through via, the member list holds exactly one
// entry named real, with its role and a live agent record; every host's
// DNS answers <real>.node.beacon with real's address.
func keepsMembership(ctx context.Context, via *Host, hosts []*Host, real *Host, role string) error {
	ms, err := via.Members(ctx)
	if err != nil {
		return err
	}
	var mine []testcluster.Member
	for _, m := range ms {
		if m.Name == real.Name {
			mine = append(mine, m)
		}
	}
	if len(mine) != 1 || mine[0].Role != role || !mine[0].AgentAlive {
		return fmt.Errorf("`beacon members` should list %s once, %s and alive: %s", real, role, roles(ms))
	}
	for _, x := range hosts {
		addr, err := x.NodeAddr(ctx, real.Name)
		if err != nil {
			return err
		}
		if addr != real.IP {
			return fmt.Errorf("%s answers %s.node.beacon with %q, want %s", x, real, addr, real.IP)
		}
	}
	return nil
}

func lastStderrLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
