package e2e

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
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

// TestPortInUseCreatesNothing: a first start that finds one of its ports
// taken stops naming the key, and leaves no data dir (nor agent.lock)
// behind.
func TestPortInUseCreatesNothing(t *testing.T) {
	c := testcluster.New(t)
	for _, taken := range []struct{ key, network string }{{"http-addr", "tcp"}, {"dns-addr", "udp"}, {"peer-url", "tcp"}} {
		a := c.Host("taken-" + taken.key)
		addr := map[string]string{"http-addr": a.HTTPAddr, "dns-addr": a.DNSAddr, "peer-url": a.PeerURL[len("http://"):]}[taken.key]
		var closer interface{ Close() error }
		var err error
		if taken.network == "udp" {
			closer, err = net.ListenPacket("udp", addr)
		} else {
			closer, err = net.Listen("tcp", addr)
		}
		if err != nil {
			t.Fatal(err)
		}
		line := refused(t, a, nil, append([]string{"agent"}, a.Args()...)...)
		closer.Close()
		if !strings.Contains(line, taken.key) || !strings.Contains(line, "in use") {
			t.Errorf("%s taken: %q, want the key named and \"in use\"", taken.key, line)
		}
		if _, err := os.Stat(a.DataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s taken: the data dir %s was created (%v)", taken.key, a.DataDir, err)
		}
	}
}

// TestReloadNamesRestartKeys: SIGHUP applies services: and says which
// changed keys it did not apply (they need a restart), instead of saying
// only "services reloaded".
func TestReloadNamesRestartKeys(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	cfg, write := configFile(t)
	write("dns-ttl: 5s\nservices:\n  - name: web\n    port: 8080\n")
	a.Start("--config", cfg)
	a.WaitReady(readyWithin)
	write("dns-ttl: 30s\nnode-ttl: 20s\nservices:\n  - name: web\n    port: 8081\n")
	if err := syscall.Kill(a.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, a, "services reloaded")
	waitLog(t, a, "take effect only after a restart")
	var warning string
	for _, l := range strings.Split(a.Log(), "\n") {
		if strings.Contains(l, "take effect only after a restart") {
			warning = l
		}
	}
	if !strings.Contains(warning, `"dns-ttl"`) || !strings.Contains(warning, `"node-ttl"`) || strings.Contains(warning, "services") {
		t.Fatalf("the reload's warning does not name exactly the changed keys: %q", warning)
	}
}
