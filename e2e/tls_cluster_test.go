package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/beaconhq/beacon/pki"
	"github.com/miekg/dns"
)

// TestTLSClusterEveryHop: three members and a proxy with TLS on every hop.
// n2 and n3 join n1 over its https client URL (learner, then promoted,
// raft over mutual TLS), the proxy joins too; every agent lists all four;
// an external agent reaches the members' https URLs; a registration on n2
// is answered by the proxy's DNS; `beacon lock` runs
// its command through the proxy's API with the TLS flags; etcdctl writes
// through the proxy's etcd endpoint with the fleet's certificates.
func TestTLSClusterEveryHop(t *testing.T) {
	p := newFleetPKI(t)
	p.client("ops")
	c := testcluster.New(t)
	n1 := tlsHost(c, p, "n1")
	n1.Start(p.flags("n1")...)
	waitReadyTLS(t, p, n1)
	agents := []*testcluster.Agent{n1}
	joinArgs := map[string][]string{}
	for _, name := range []string{"n2", "n3"} {
		a := tlsHost(c, p, name)
		joinArgs[name] = append([]string{"--join", n1.ClientURL}, p.flags(name)...)
		a.Start(joinArgs[name]...)
		waitReadyTLS(t, p, a)
		agents = append(agents, a)
	}
	px := tlsHost(c, p, "p1")
	px.Start(append([]string{"--role", "proxy", "--join", n1.ClientURL}, p.flags("p1")...)...)
	waitReadyTLS(t, p, px)
	agents = append(agents, px)
	// An external agent fronts the same cluster as a plain etcd cluster,
	// through its https client URLs.
	ex := tlsHost(c, p, "e1")
	ex.Start(append([]string{"--role", "external", "--endpoints", n1.ClientURL + "," + agents[1].ClientURL}, p.flags("e1")...)...)
	waitReadyTLS(t, p, ex)
	agents = append(agents, ex)

	// Every agent lists the same five, the members with https URLs.
	want := "n1:voter n2:voter n3:voter p1:proxy e1:external"
	err := testcluster.Eventually(readyWithin, func() error {
		for _, a := range agents {
			out, stderr, err := tlsCLI(t, p, a, "members")
			if err != nil {
				return fmt.Errorf("%s: beacon members: %v: %s", a.Name, err, stderr)
			}
			for _, row := range strings.Fields(want) {
				name, role, _ := strings.Cut(row, ":")
				if !hasRow(out, name, role) {
					return fmt.Errorf("%s: beacon members lacks %s as %s:\n%s", a.Name, name, role, out)
				}
			}
			if strings.Contains(out, "http://") {
				return fmt.Errorf("%s: a plain URL in beacon members:\n%s", a.Name, out)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A registration on n2 is answered by the proxy's DNS (the catalog
	// is fed by a watch through the proxy's TLS etcd clients).
	if _, stderr, err := tlsCLI(t, p, agents[1], "register", "--name", "web", "--port", "8080"); err != nil {
		t.Fatalf("beacon register: %v: %s", err, stderr)
	}
	waitDNS(t, px, "web.service.beacon", dns.TypeSRV, "n2's web", has("8080 n2-web-8080.web.service.beacon."))

	// beacon lock through the proxy's API, with the TLS flags.
	out, stderr, err := tlsCLI(t, p, px, "lock", "tls-job", "--", "sh", "-c", "echo ran under the lock")
	if err != nil || !strings.Contains(out, "ran under the lock") {
		t.Fatalf("beacon lock over TLS: %v: %q %s", err, out, stderr)
	}

	// etcdctl through the proxy's etcd-compatible endpoint, over TLS.
	cert, key := pki.CertFiles(p.dir, "ops")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	etcdctl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, testcluster.Etcdctl(t), append([]string{"--endpoints", px.ClientURL,
			"--cacert", p.ca(), "--cert", cert, "--key", key, "--dial-timeout", "5s"}, args...)...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if out, err := etcdctl("put", "tls-k", "tls-v"); err != nil {
		t.Fatalf("etcdctl put through the TLS proxy: %v: %s", err, out)
	}
	if out, err := etcdctl("get", "tls-k", "--print-value-only"); err != nil || strings.TrimSpace(out) != "tls-v" {
		t.Fatalf("etcdctl get through the TLS proxy: %v: %q", err, out)
	}

	// A member killed and started again with the same flags resumes its
	// data over TLS (it asks the cluster it last saw whether it is still
	// a member, through its TLS client).
	n3 := agents[2]
	n3.Kill()
	n3.Start(joinArgs["n3"]...)
	waitReadyTLS(t, p, n3)
	if !strings.Contains(n3.Log(), "agent ready") || strings.Contains(n3.Log(), "added as learner") {
		t.Fatalf("n3 did not resume its member:\n%s", n3.Log())
	}

	// A TLS member leaves. Its own removal stops it, so the answer to the
	// removal is often lost; the agent then asks another voter, over TLS
	// (a plain client there answered "not gone", and leave failed).
	n2 := agents[1]
	out, stderr, err = tlsCLI(t, p, n2, "leave")
	if err != nil || !strings.Contains(out, "n2 left the cluster") {
		t.Fatalf("beacon leave of a TLS member: %v: %q %s\n%s", err, out, stderr, n2.Log())
	}
	if err := n2.WaitExit(30 * time.Second); err != nil {
		t.Fatalf("the member that left exited with %v\n%s", err, n2.Log())
	}
	err = testcluster.Eventually(readyWithin, func() error {
		out, stderr, err := tlsCLI(t, p, n1, "members")
		if err != nil {
			return fmt.Errorf("beacon members: %v: %s", err, stderr)
		}
		if hasRow(out, "n2", "voter") || !hasRow(out, "n3", "voter") {
			return fmt.Errorf("want n2 gone and n3 a voter:\n%s", out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// hasRow reports whether a `beacon members` table has a row for name in
// role.
func hasRow(table, name, role string) bool {
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == name && f[2] == role {
			return true
		}
	}
	return false
}
