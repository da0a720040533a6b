package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

const readyWithin = 60 * time.Second

// startStatic bootstraps n voters with --initial-cluster.
func startStatic(t *testing.T, c *testcluster.Cluster, n int, extra ...string) []*testcluster.Agent {
	t.Helper()
	var agents []*testcluster.Agent
	for i := 1; i <= n; i++ {
		agents = append(agents, c.Host(fmt.Sprintf("n%d", i)))
	}
	ic := testcluster.InitialCluster(agents...)
	for _, a := range agents {
		a.Start(append([]string{"--initial-cluster", ic}, extra...)...)
	}
	for _, a := range agents {
		a.WaitReady(readyWithin)
	}
	return agents
}

// roles summarises a member list as "name:role" sorted, for comparing
// what different agents report.
func roles(ms []testcluster.Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name+":"+m.Role)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func countRole(ms []testcluster.Member, role string) int {
	n := 0
	for _, m := range ms {
		if m.Role == role {
			n++
		}
	}
	return n
}

// waitMembers waits until every agent's `beacon members -w json` reports
// the same membership and it satisfies ok.
func waitMembers(t *testing.T, agents []*testcluster.Agent, ok func([]testcluster.Member) error) string {
	t.Helper()
	var last string
	err := testcluster.Eventually(readyWithin, func() error {
		var first string
		for i, a := range agents {
			ms, err := a.Members()
			if err != nil {
				return fmt.Errorf("%s: %v", a.Name, err)
			}
			r := roles(ms)
			if i == 0 {
				first = r
				if err := ok(ms); err != nil {
					last = r
					return err
				}
			} else if r != first {
				return fmt.Errorf("%s reports %q, %s reports %q", agents[0].Name, first, a.Name, r)
			}
		}
		last = first
		return nil
	})
	if err != nil {
		t.Fatalf("membership: %v (last seen %q)", err, last)
	}
	return last
}

// putVia writes a key through an agent's client URL.
func putVia(t *testing.T, a *testcluster.Agent, key, val string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := a.Client().Put(ctx, key, val)
	return err
}

// memberAndProxy starts a one-member cluster "a" and a proxy "b" (or the
// name given) joined to it, with extra flags for the proxy.
func memberAndProxy(t *testing.T, c *testcluster.Cluster, proxyName string, proxyArgs ...string) (*testcluster.Agent, *testcluster.Agent) {
	t.Helper()
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	b := c.Host(proxyName)
	b.Start(append([]string{"--role", "proxy", "--join", a.ClientURL}, proxyArgs...)...)
	b.WaitReady(readyWithin)
	return a, b
}

// configFile is the path of a config file for an agent of the test, and
// a function that (re)writes it.
func configFile(t *testing.T) (string, func(body string)) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "beacon.yaml")
	return cfg, func(body string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
