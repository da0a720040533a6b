package e2e

import (
	"context"
	"net/http"
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

// TestTLSWalkthrough runs the README's TLS walkthrough as written, in bash,
// in an empty directory with ./beacon and etcdctl at hand: three members
// and a proxy on 127.0.0.21–24 with TLS on every hop. Each `dig` line is
// asked by this test with a DNS client instead (dig is not installed
// everywhere the tests run); everything else runs as printed.
func TestTLSWalkthrough(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)<!-- e2e: TestTLSWalkthrough -->\n```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README.md has no TLS walkthrough block")
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
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	// A file, not a pipe: the agents the script leaves running keep its
	// descriptors, and a pipe would make Wait wait for them.
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that the agents it starts in the
	// background go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if t.Failed() {
			for _, n := range []string{"n1", "n2", "n3", "p1"} {
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
	for _, want := range []string{"n1    voter", "n2    voter", "n3    voter", "p1    proxy", "https://127.0.0.21:2380",
		"registered n2-web-8080", "ran under the lock", `"status":"ready"`, "OK"} {
		if !strings.Contains(string(printed), want) {
			t.Errorf("the walkthrough's output lacks %q:\n%s", want, printed)
		}
	}

	// The dig lines: @SERVER -p PORT NAME TYPE.
	for _, line := range digs {
		f := strings.Fields(line)
		server, port, name, qtype := strings.TrimPrefix(f[1], "@"), f[3], f[4], dns.StringToType[f[5]]
		a := &testcluster.Agent{Name: server, DNSAddr: server + ":" + port}
		waitDNS(t, a, name, qtype, "the walkthrough's answer", has("8080 n2-web-8080.web.service.beacon."))
	}

	// A plain client gets a 400 from HTTP's TLS listener.
	resp, err := http.Get("http://127.0.0.24:7601/ready")
	if err == nil {
		resp.Body.Close()
	}
	if err == nil && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS listener: %s", resp.Status)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
