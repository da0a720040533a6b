// Package testcluster starts real beacon agents as separate processes for
// tests: each on its own loopback address (127.x.y.N) with the default
// ports, like hosts of a fleet, each with its own data dir.
package testcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// moduleRoot finds the directory of go.mod above this file.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// build compiles beacon and etcdctl once per test binary.
func build() (string, error) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "beacon-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"./cmd/beacon", "go.etcd.io/etcd/etcdctl/v3"} {
			name := filepath.Base(strings.TrimSuffix(pkg, "/v3"))
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), pkg)
			cmd.Dir = moduleRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	return buildDir, buildErr
}

// Binary is the path of the beacon binary built for this test run.
func Binary(t testing.TB) string {
	t.Helper()
	dir, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "beacon")
}

// Etcdctl is the path of etcdctl built from the module's tool dependency.
func Etcdctl(t testing.TB) string {
	t.Helper()
	dir, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "etcdctl")
}

// Cluster hands out loopback hosts for one test.
type Cluster struct {
	t      testing.TB
	prefix string // "127.x.y."
	next   int
	agents []*Agent
}

// New returns a cluster on a random 127.x.y.0/24 of its own.
func New(t testing.TB) *Cluster {
	var b [2]byte
	_, _ = rand.Read(b[:])
	c := &Cluster{t: t, prefix: fmt.Sprintf("127.%d.%d.", 1+b[0]%250, b[1])}
	t.Cleanup(c.killAll)
	return c
}

// Agent is one beacon agent process and its addresses.
type Agent struct {
	c         *Cluster
	Name      string
	IP        string
	DataDir   string
	ClientURL string
	PeerURL   string
	APIAddr   string
	HTTPAddr  string
	DNSAddr   string

	mu     sync.Mutex
	cmd    *exec.Cmd
	log    *bytes.Buffer
	exited chan struct{}
	exit   error
}

// Host allocates the next host address and a data dir for a named agent.
func (c *Cluster) Host(name string) *Agent {
	c.next++
	ip := fmt.Sprintf("%s%d", c.prefix, c.next)
	a := &Agent{
		c: c, Name: name, IP: ip,
		DataDir:   filepath.Join(c.t.TempDir(), name),
		ClientURL: "http://" + ip + ":2379",
		PeerURL:   "http://" + ip + ":2380",
		APIAddr:   ip + ":7600",
		HTTPAddr:  ip + ":7601",
		DNSAddr:   ip + ":8600",
	}
	c.agents = append(c.agents, a)
	return a
}

// Args are the flags that place the agent on its host.
func (a *Agent) Args() []string {
	return []string{
		"--name", a.Name, "--data-dir", a.DataDir,
		"--client-url", a.ClientURL, "--peer-url", a.PeerURL,
		"--api-addr", a.APIAddr, "--http-addr", a.HTTPAddr, "--dns-addr", a.DNSAddr,
	}
}

// Start runs `beacon agent` with the host's flags and extra ones.
func (a *Agent) Start(extra ...string) {
	a.c.t.Helper()
	args := append(append([]string{"agent"}, a.Args()...), extra...)
	a.StartRaw(nil, args...)
}

// StartRaw runs beacon with exactly args and extra environment.
func (a *Agent) StartRaw(env []string, args ...string) {
	a.c.t.Helper()
	a.startCmd("", env, args)
}

func (a *Agent) startCmd(dir string, env, args []string) {
	a.c.t.Helper()
	cmd := exec.Command(Binary(a.c.t), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	log := &bytes.Buffer{}
	cmd.Stdout = &lockedWriter{w: log, mu: &a.mu}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		a.c.t.Fatalf("starting %s: %v", a.Name, err)
	}
	exited := make(chan struct{})
	a.mu.Lock()
	a.cmd, a.log, a.exited, a.exit = cmd, log, exited, nil
	a.mu.Unlock()
	go func() {
		err := cmd.Wait()
		a.mu.Lock()
		a.exit = err
		a.mu.Unlock()
		close(exited)
	}()
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Log is what the agent printed so far.
func (a *Agent) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.log == nil {
		return ""
	}
	return a.log.String()
}

// Pid is the agent's process id.
func (a *Agent) Pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to be gone.
func (a *Agent) Kill() {
	a.signal(syscall.SIGKILL)
	a.WaitExit(10 * time.Second)
}

// Stop sends SIGTERM and returns the exit error once the process is gone.
func (a *Agent) Stop() error {
	a.signal(syscall.SIGTERM)
	return a.WaitExit(15 * time.Second)
}

func (a *Agent) signal(sig syscall.Signal) {
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// WaitExit waits for the process to end and returns its exit error; the
// test fails if it has not ended within d.
func (a *Agent) WaitExit(d time.Duration) error {
	a.c.t.Helper()
	a.mu.Lock()
	exited := a.exited
	a.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
	case <-time.After(d):
		a.c.t.Fatalf("%s did not exit within %s; log:\n%s", a.Name, d, tail(a.Log(), 30))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.exit
}

// Exited reports whether the process has ended.
func (a *Agent) Exited() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.exited == nil {
		return true
	}
	select {
	case <-a.exited:
		return true
	default:
		return false
	}
}

// WaitReady waits until /ready answers 200, failing the test after d or if
// the process exits first.
func (a *Agent) WaitReady(d time.Duration) {
	a.c.t.Helper()
	err := Eventually(d, func() error {
		if a.Exited() {
			return errStop{fmt.Errorf("%s exited: %v", a.Name, a.exit)}
		}
		resp, err := http.Get("http://" + a.HTTPAddr + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		a.c.t.Fatalf("%s not ready: %v; log:\n%s", a.Name, err, tail(a.Log(), 40))
	}
}

// CLI runs a beacon command against this agent's API.
func (a *Agent) CLI(args ...string) (stdout, stderr string, err error) {
	return RunCLI(a.c.t, append(args, "--agent", a.APIAddr)...)
}

// RunCLI runs beacon with args.
func RunCLI(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(Binary(t), args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		err = <-done
	}
	return o.String(), e.String(), err
}

// Member is one row of `beacon members -w json`.
type Member struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	AgentAlive bool     `json:"agent_alive"`
}

// Members asks this agent's CLI for the member list.
func (a *Agent) Members() ([]Member, error) {
	out, stderr, err := a.CLI("members", "-w", "json")
	if err != nil {
		return nil, fmt.Errorf("beacon members: %v: %s", err, stderr)
	}
	var resp struct {
		Members []Member `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("beacon members -w json: %v: %q", err, out)
	}
	return resp.Members, nil
}

// Client is a plain etcd client of this agent's client URL.
func (a *Agent) Client() *clientv3.Client {
	a.c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{a.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		a.c.t.Fatal(err)
	}
	a.c.t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) killAll() {
	for _, a := range c.agents {
		a.mu.Lock()
		cmd, exited := a.cmd, a.exited
		a.mu.Unlock()
		if cmd == nil || cmd.Process == nil {
			continue
		}
		_ = cmd.Process.Kill()
		if exited != nil {
			<-exited
		}
		if c.t.Failed() {
			c.t.Logf("--- log of %s (last lines):\n%s", a.Name, tail(a.Log(), 25))
		}
	}
}

// InitialCluster is the --initial-cluster value for agents.
func InitialCluster(agents ...*Agent) string {
	var parts []string
	for _, a := range agents {
		parts = append(parts, a.Name+"="+a.PeerURL)
	}
	return strings.Join(parts, ",")
}

// errStop ends Eventually early.
type errStop struct{ error }

// Eventually calls f until it returns nil or d passes; it returns the last
// error. It waits on a condition, never on a guess about timing.
func Eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	wait := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartIn runs beacon with exactly args in the working directory dir.
func (a *Agent) StartIn(dir string, args ...string) {
	a.c.t.Helper()
	a.startCmd(dir, nil, args)
}

// Cleanup removes the binaries built for the test run; call it from
// TestMain after m.Run.
func Cleanup() {
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
}
