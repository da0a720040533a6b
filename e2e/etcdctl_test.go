package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// TestEtcdctlThroughProxy: etcdctl pointed at a proxy's client URL works
// for put, get, watch, lease, lock, elect and member list.
func TestEtcdctlThroughProxy(t *testing.T) {
	c := testcluster.New(t)
	m := c.Host("n1")
	m.Start()
	m.WaitReady(readyWithin)
	p := c.Host("p1")
	p.Start("--role", "proxy", "--join", m.ClientURL)
	p.WaitReady(readyWithin)

	etcdctl := func(args ...string) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, testcluster.Etcdctl(t), append([]string{"--endpoints", p.ClientURL, "--dial-timeout", "5s"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}

	etcdctl("put", "k1", "v1")
	if out := etcdctl("get", "k1"); out != "k1\nv1\n" {
		t.Fatalf("get through proxy: %q", out)
	}
	if out := etcdctl("member", "list"); !strings.Contains(out, "n1") || !strings.Contains(out, m.PeerURL) {
		t.Fatalf("member list through proxy: %q", out)
	}
	lease := etcdctl("lease", "grant", "60")
	if !strings.Contains(lease, "granted with TTL(60s)") {
		t.Fatalf("lease grant: %q", lease)
	}
	id := strings.Fields(lease)[1]
	etcdctl("put", "leased", "x", "--lease", id)
	etcdctl("lease", "revoke", id)
	if out := etcdctl("get", "leased"); out != "" {
		t.Fatalf("key outlived its revoked lease: %q", out)
	}

	// watch: a put through the member shows up on a watch through the proxy.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watch := exec.CommandContext(ctx, testcluster.Etcdctl(t), "--endpoints", p.ClientURL, "watch", "wk")
	stdout, _ := watch.StdoutPipe()
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Process.Kill(); _ = watch.Wait() }()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Keep putting until the watch, whose start we cannot observe, sees one.
	seen := false
	for i := 0; i < 50 && !seen; i++ {
		if err := putVia(t, m, "wk", "changed"); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-lines:
			seen = l == "PUT"
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !seen {
		t.Fatal("etcdctl watch through the proxy saw no PUT")
	}

	// lock and elect run a command while holding the lock or leading.
	if out := etcdctl("lock", "/beacon/locks/etcdctl-test", "echo", "locked"); !strings.Contains(out, "locked") {
		t.Fatalf("lock: %q", out)
	}
	elect := exec.CommandContext(ctx, testcluster.Etcdctl(t), "--endpoints", p.ClientURL, "elect", "e1", "proposal-1")
	eout, _ := elect.StdoutPipe()
	if err := elect.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = elect.Process.Kill(); _ = elect.Wait() }()
	sc := bufio.NewScanner(eout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "e1/") {
		t.Fatalf("elect through proxy printed %q", sc.Text())
	}
	// elect -l observes: its first line names the current leader's key,
	// the second its proposal.
	observe := exec.CommandContext(ctx, testcluster.Etcdctl(t), "--endpoints", p.ClientURL, "elect", "-l", "e1")
	oout, _ := observe.StdoutPipe()
	if err := observe.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = observe.Process.Kill(); _ = observe.Wait() }()
	osc := bufio.NewScanner(oout)
	if !osc.Scan() || !osc.Scan() || osc.Text() != "proposal-1" {
		t.Fatalf("elect -l through proxy printed %q", osc.Text())
	}
}
