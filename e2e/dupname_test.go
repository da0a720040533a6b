package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
)

// TestDuplicateNameRefused: a host that joins (as a member, a proxy, or
// auto) under a node name a running member or proxy already has is
// refused with one line naming the name and the host that has it; the
// running agents keep their places in `beacon members` and their
// <node>.node.beacon, also once the refused hosts are gone.
func TestDuplicateNameRefused(t *testing.T) {
	c := testcluster.New(t)
	a, p := memberAndProxy(t, c, "p")

	for _, tc := range []struct {
		name   string
		holder *testcluster.Agent
		args   []string
	}{
		{"a", a, []string{"--role", "proxy", "--join", p.ClientURL}},  // a proxy named like the member
		{"p", p, []string{"--join", a.ClientURL}},                     // a member named like the proxy
		{"p", p, []string{"--role", "proxy", "--join", a.ClientURL}},  // a proxy named like the proxy
		{"p", p, []string{"--role", "auto", "--join", a.ClientURL}},   // auto, named like the proxy
		{"a", a, []string{"--role", "auto", "--join", a.ClientURL}},   // auto, named like the member
		{"a", a, []string{"--role", "member", "--join", p.ClientURL}}, // a member named like the member
	} {
		dup := c.Host(tc.name)
		dup.Start(tc.args...)
		desc := fmt.Sprintf("a second %s (%s)", tc.name, strings.Join(tc.args, " "))
		// Refused: it exits. Accepted: it gets ready.
		err := testcluster.Eventually(readyWithin, func() error {
			if dup.Exited() {
				return nil
			}
			if resp, err := http.Get("http://" + dup.HTTPAddr + "/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
			return fmt.Errorf("neither refused nor ready")
		})
		if err != nil {
			t.Fatalf("%s: %v; log:\n%s", desc, err, dup.Log())
		}
		if !dup.Exited() {
			t.Errorf("%s was accepted while %s runs on %s", desc, tc.name, tc.holder.IP)
			_ = dup.Stop() // what used to take the running agent's record with it
			continue
		}
		if dup.WaitExit(readyWithin) == nil {
			t.Errorf("%s: exit status 0", desc)
		}
		var last string
		for _, l := range strings.Split(strings.TrimSpace(dup.Log()), "\n") {
			if strings.HasPrefix(l, "beacon: ") {
				last = l
			}
		}
		t.Logf("%s: %s", desc, last)
		if !strings.Contains(last, " "+tc.name+" ") || !strings.Contains(last, tc.holder.IP) {
			t.Errorf("%s: the error line %q should name %s and its host %s; log:\n%s", desc, last, tc.name, tc.holder.IP, dup.Log())
		}
	}

	// The running agents are where they were, on every agent's list and in
	// DNS. (A node record lost for good would not come back: no waiting.)
	for _, via := range []*testcluster.Agent{a, p} {
		ms, err := via.Members()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]testcluster.Member{}
		for _, m := range ms {
			got[m.Name] = m
		}
		if m := got["a"]; m.Role != "voter" || !m.AgentAlive {
			t.Errorf("via %s: a is %+v, want a voter with its agent alive (all: %s)", via.Name, m, roles(ms))
		}
		if m := got["p"]; m.Role != "proxy" || !m.AgentAlive {
			t.Errorf("via %s: p is %+v, want a proxy with its agent alive (all: %s)", via.Name, m, roles(ms))
		}
		if len(ms) != 2 {
			t.Errorf("via %s: %d members, want 2: %s", via.Name, len(ms), roles(ms))
		}
		for _, h := range []*testcluster.Agent{a, p} {
			rrs, rcode := dnsAnswer(t, via, h.Name+".node.beacon", dns.TypeA)
			if rcode != dns.RcodeSuccess || len(rrs) != 1 || rrs[0] != "A "+h.IP {
				t.Errorf("via %s: %s.node.beacon answers %v (rcode %d), want A %s", via.Name, h.Name, rrs, rcode, h.IP)
			}
		}
	}
}
