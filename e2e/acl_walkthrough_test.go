package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
)

// TestACLWalkthrough runs the README's ACL walkthrough as written, in
// bash, in an empty directory with ./beacon and etcdctl at hand: a member
// with --acl on 127.0.0.31, and a second joining on 127.0.0.32 with a copy
// of the first's etcd credentials. Its `dig` line is asked by this test with a DNS
// client instead; everything else runs as printed, and each refusal the
// README promises must be in the output.
func TestACLWalkthrough(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)<!-- e2e: TestACLWalkthrough -->\n```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README.md has no ACL walkthrough block")
	}
	var script, digs []string
	for _, line := range strings.Split(string(block[1]), "\n") {
		if strings.HasPrefix(line, "dig ") {
			digs = append(digs, line)
			line = ": " + line
		}
		script = append(script, line)
	}
	if len(digs) == 0 {
		t.Fatal("the walkthrough asks DNS nothing")
	}

	dir := t.TempDir()
	if err := os.Symlink(testcluster.Binary(t), filepath.Join(dir, "beacon")); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(testcluster.Etcdctl(t), filepath.Join(bin, "etcdctl")); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BEACON_AGENT=", "BEACON_TOKEN=", "PATH="+bin+":"+os.Getenv("PATH"))
	// A file, not a pipe: the agent the script leaves running keeps its
	// descriptors. Its own process group, so that the agent goes with it.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if t.Failed() {
			for _, n := range []string{"a1", "a2"} {
				b, _ := os.ReadFile(filepath.Join(dir, "data", n+".log"))
				t.Logf("--- %s.log:\n%s", n, tail(string(b), 15))
			}
		}
	})
	runErr := cmd.Wait()
	printed, _ := os.ReadFile(out.Name())
	if runErr != nil {
		t.Fatalf("the walkthrough failed: %v\n%s", runErr, printed)
	}
	for _, want := range []string{
		"bootstrap management token",
		"beacon: unauthenticated: ACLs are on: this call needs a token",
		"batch-1 ran under the lock",
		"beacon: permission denied: this call needs lock:payments:write, which token",
		"registered a1-web-8080",
		"web      1",
		"beacon: permission denied: this call needs service:api:write",
		"user name is empty",
		"batch-2 ran on a2",
		"batch jobs",
		"revoked ",
		"beacon: unauthenticated: the token is not known",
	} {
		if !strings.Contains(string(printed), want) {
			t.Errorf("the walkthrough's output lacks %q:\n%s", want, printed)
		}
	}
	for _, line := range digs {
		f := strings.Fields(line)
		server, port, name, qtype := strings.TrimPrefix(f[1], "@"), f[3], f[4], dns.StringToType[f[5]]
		a := &testcluster.Agent{Name: server, DNSAddr: server + ":" + port}
		waitDNS(t, a, name, qtype, "the walkthrough's answer", has("8080 a1-web-8080.web.service.beacon."))
	}
}
