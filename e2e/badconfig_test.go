package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
)

// refused starts an agent that must stop at once, and returns its one
// error line.
func refused(t *testing.T, a *testcluster.Agent, env []string, args ...string) string {
	t.Helper()
	a.StartRaw(env, args...)
	if err := a.WaitExit(60 * time.Second); err == nil {
		t.Fatalf("agent with %v started; want a refusal\n%s", args, a.Log())
	}
	log := a.Log()
	if strings.Contains(log, "panic") || strings.Contains(log, "goroutine ") {
		t.Fatalf("stack trace on bad input:\n%s", log)
	}
	last := lastLine(log)
	if !strings.HasPrefix(last, "beacon: ") {
		t.Fatalf("last line is not the error: %q", last)
	}
	return last
}

// TestBadConfig: each bad setting stops the agent with one line naming the
// key and the cause, before anything starts.
func TestBadConfig(t *testing.T) {
	c := testcluster.New(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unknown := write("unknown.yaml", "name: x\nclient-urls: http://127.0.0.1:2379\n")
	badYAML := write("bad.yaml", "name: [x\n")
	badValue := write("badvalue.yaml", "voters: many\n")

	cases := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"unknown key", nil, []string{"--config", unknown}, []string{"client-urls", "unknown key"}},
		{"not yaml", nil, []string{"--config", badYAML}, []string{"config file", "not valid YAML"}},
		{"bad value in file", nil, []string{"--config", badValue}, []string{"voters", "many"}},
		{"missing file", nil, []string{"--config", filepath.Join(dir, "nope.yaml")}, []string{"config file", "no such file"}},
		{"malformed client URL", nil, []string{"--client-url", "htp//127.0.0.1"}, []string{"client-url", "htp//127.0.0.1"}},
		{"https peer URL", nil, []string{"--peer-url", "https://127.0.0.1:2380"}, []string{"peer-url", "https"}},
		{"URL without port", nil, []string{"--join", "http://127.0.0.1"}, []string{"join", "no port"}},
		{"bad env value", []string{"BEACON_VOTERS=abc"}, nil, []string{"voters", "abc"}},
		{"bad role", nil, []string{"--role", "leader"}, []string{"role", "leader"}},
		{"bad log level", []string{"BEACON_LOG_LEVEL=loud"}, nil, []string{"log-level", "loud"}},
		{"bad api addr", nil, []string{"--api-addr", "localhost"}, []string{"api-addr"}},
		{"bad duration", nil, []string{"--node-ttl", "soon"}, []string{"node-ttl", "soon"}},
		{"proxy without join", nil, []string{"--role", "proxy"}, []string{"join", "proxy"}},
		{"external without endpoints", nil, []string{"--role", "external"}, []string{"endpoints"}},
		{"name missing from initial cluster", nil, []string{"--name", "n9", "--initial-cluster", "n1=http://127.0.0.1:2380"}, []string{"initial-cluster", "n9", "missing"}},
		{"join and initial cluster", nil, []string{"--initial-cluster", "bad={peer}", "--join", "127.0.0.1:2379"}, []string{"join", "either"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := c.Host("bad")
			args := append([]string{"agent"}, a.Args()...)
			for _, arg := range tc.args {
				args = append(args, strings.ReplaceAll(arg, "{peer}", a.PeerURL))
			}
			line := refused(t, a, tc.env, args...)
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error line %q lacks %q", line, w)
				}
			}
			if strings.Count(strings.TrimSpace(a.Log()), "\n") != 0 {
				t.Errorf("config errors must be one line, got:\n%s", a.Log())
			}
		})
	}
}

// TestPortInUse: a port held by another process stops the agent with the
// key named, for each of the agent's listeners.
func TestPortInUse(t *testing.T) {
	c := testcluster.New(t)
	for _, key := range []string{"api-addr", "http-addr", "client-url", "peer-url"} {
		t.Run(key, func(t *testing.T) {
			a := c.Host("busy")
			addr := map[string]string{"api-addr": a.APIAddr, "http-addr": a.HTTPAddr,
				"client-url": strings.TrimPrefix(a.ClientURL, "http://"), "peer-url": strings.TrimPrefix(a.PeerURL, "http://")}[key]
			l, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			line := refused(t, a, nil, append([]string{"agent"}, a.Args()...)...)
			if !strings.Contains(line, key) || !strings.Contains(line, "in use") {
				t.Fatalf("error line %q should name %s and say it is in use", line, key)
			}
		})
	}
}

// TestForeignDataDir: a data dir of another cluster is refused when joining.
func TestForeignDataDir(t *testing.T) {
	c := testcluster.New(t)
	other := c.Host("x1")
	other.Start()
	other.WaitReady(readyWithin)
	if err := other.Stop(); err != nil {
		t.Fatal(err)
	}

	main := c.Host("n1")
	main.Start()
	main.WaitReady(readyWithin)

	// x1's data dir, pointed at n1's cluster.
	reuse := c.Host("x1")
	reuse.DataDir = other.DataDir
	line := refused(t, reuse, nil, append(append([]string{"agent"}, reuse.Args()...), "--join", main.ClientURL)...)
	for _, w := range []string{"another cluster", other.DataDir, "--data-dir"} {
		if !strings.Contains(line, w) {
			t.Errorf("error line %q lacks %q", line, w)
		}
	}
	// Same data dir under another name.
	renamed := c.Host("y1")
	renamed.DataDir = other.DataDir
	line = refused(t, renamed, nil, append([]string{"agent"}, renamed.Args()...)...)
	if !strings.Contains(line, `holds member "x1"`) {
		t.Errorf("error line %q should name the data dir's member", line)
	}
}

// TestRemovedMember: a member removed behind its back (etcdctl member
// remove) stops with one line saying so, and so does its restart.
func TestRemovedMember(t *testing.T) {
	c := testcluster.New(t)
	ms := startStatic(t, c, 3)
	id := ""
	members, err := ms[0].Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Name == "n3" {
			id = m.ID
		}
	}
	cli := ms[0].Client()
	var rid uint64
	for _, ch := range id {
		rid = rid*16 + uint64(strings.IndexRune("0123456789abcdef", ch))
	}
	err = testcluster.Eventually(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cli.MemberRemove(ctx, rid)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ms[2].WaitExit(30 * time.Second)
	if last := lastLine(ms[2].Log()); !strings.Contains(last, "removed from the cluster") || !strings.Contains(last, "--join") {
		t.Fatalf("a removed member should say so: %q", last)
	}
	line := refused(t, ms[2], nil, append(append([]string{"agent"}, ms[2].Args()...), "--initial-cluster", testcluster.InitialCluster(ms...))...)
	if !strings.Contains(line, "removed") || !strings.Contains(line, ms[2].DataDir) {
		t.Fatalf("restart of a removed member: %q", line)
	}
}
