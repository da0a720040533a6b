package e2e

import (
	"net"
	"net/url"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// portsFree fails unless every address the agent served can be bound
// again now: its API, HTTP and DNS (UDP and TCP), and its etcd URLs.
func portsFree(t *testing.T, a *testcluster.Agent, urls ...string) {
	t.Helper()
	addrs := []string{a.APIAddr, a.HTTPAddr, a.DNSAddr}
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, p.Host)
	}
	for _, addr := range addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still holds %s after leave returned: %v", a.Name, addr, err)
			continue
		}
		l.Close()
	}
	pc, err := net.ListenPacket("udp", a.DNSAddr)
	if err != nil {
		t.Errorf("%s still holds udp %s after leave returned: %v", a.Name, a.DNSAddr, err)
		return
	}
	pc.Close()
}

// TestLeaveReturnsWhenStopped: `beacon leave` answers once the agent has
// stopped and freed its ports, so another agent can start in its place at
// once (it answered about a second to seven before).
func TestLeaveReturnsWhenStopped(t *testing.T) {
	c := testcluster.New(t)
	voters := startStatic(t, c, 3)
	proxy := c.Host("p1")
	proxy.Start("--role", "proxy", "--join", voters[0].ClientURL)
	proxy.WaitReady(readyWithin)

	for _, leaving := range []struct {
		a    *testcluster.Agent
		urls []string
	}{
		{proxy, []string{proxy.ClientURL}},
		{voters[2], []string{voters[2].ClientURL, voters[2].PeerURL}},
	} {
		out, errOut, err := leaving.a.CLI("leave")
		if err != nil {
			t.Fatalf("leave %s: %v\n%s%s", leaving.a.Name, err, out, errOut)
		}
		portsFree(t, leaving.a, leaving.urls...)
	}
}
