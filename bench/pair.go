package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// agentProc is an agent the benchmark started.
type agentProc struct {
	cmd       *exec.Cmd
	IP        string
	API       string
	DNS       string
	ClientURL string
}

// startAgent starts an agent of this binary on a loopback address of its
// own, and waits until it is ready.
func startAgent(ctx context.Context, dir, name string, extra ...string) (*agentProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ip := host()
	p := &agentProc{IP: ip, API: ip + ":7600", DNS: ip + ":8600", ClientURL: "http://" + ip + ":2379"}
	args := append([]string{"agent", "--name", name, "--data-dir", filepath.Join(dir, name),
		"--client-url", p.ClientURL, "--peer-url", "http://" + ip + ":2380",
		"--api-addr", p.API, "--http-addr", ip + ":7601", "--dns-addr", p.DNS, "--log-level", "error"}, extra...)
	p.cmd = exec.Command(self, args...)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if _, err := waitReady(ctx, time.Now(), func(ctx context.Context) error { return httpReady(ctx, "http://"+ip+":7601/ready") }); err != nil {
		stop(p.cmd)
		return nil, fmt.Errorf("agent %s: %w", name, err)
	}
	return p, nil
}

// startPair starts a member and a proxy joined to it, for benchmarks that
// need two agents.
func startPair(ctx context.Context, dir string) (member, proxy *agentProc, stopAll func(), err error) {
	var procs []*agentProc
	stopAll = func() {
		for _, p := range procs {
			stop(p.cmd)
		}
	}
	start := func(name string, extra ...string) (*agentProc, error) {
		p, err := startAgent(ctx, dir, name, extra...)
		if err == nil {
			procs = append(procs, p)
		}
		return p, err
	}
	if member, err = start("bench-a"); err != nil {
		stopAll()
		return nil, nil, nil, err
	}
	if proxy, err = start("bench-b", "--role", "proxy", "--join", member.ClientURL); err != nil {
		stopAll()
		return nil, nil, nil, err
	}
	return member, proxy, stopAll, nil
}

// ownAgent starts a one-node agent in a temporary data dir for a
// benchmark that was not pointed at one; done stops it and removes the dir.
func ownAgent(ctx context.Context, name string) (a *agentProc, done func(), err error) {
	dir, err := os.MkdirTemp("", "beacon-"+name+"-")
	if err != nil {
		return nil, nil, err
	}
	a, err = startAgent(ctx, dir, name)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return a, func() { stop(a.cmd); os.RemoveAll(dir) }, nil
}
