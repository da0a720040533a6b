package bench

import (
	"context"
	"fmt"
	"github.com/beaconhq/beacon/acl"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// agentProc is an agent the benchmark started.
type agentProc struct {
	cmd       *exec.Cmd
	IP        string
	API       string
	DNS       string
	ClientURL string
	// sec is the PKI of an agent started with TLS on every hop, nil for a
	// plain one: what a client of it dials with.
	sec *benchTLS
	// token is the ACL token a client of an agent started with --acl
	// sends; etcdUser its etcd credentials, for the plain way.
	token    string
	etcdUser *acl.EtcdCredentials
}

// startAgent starts an agent of this binary on a loopback address of its
// own, and waits until it is ready.
func startAgent(ctx context.Context, dir, name string, extra ...string) (*agentProc, error) {
	return startAgentTLS(ctx, dir, name, nil, extra...)
}

// startAgentTLS is startAgent with TLS on every hop under sec's CA (a
// certificate of its own for the agent), or plain when sec is nil.
func startAgentTLS(ctx context.Context, dir, name string, sec *benchTLS, extra ...string) (*agentProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ip := host()
	scheme := "http"
	var tlsArgs []string
	if sec != nil {
		scheme = "https"
		f, err := sec.host(name, ip)
		if err != nil {
			return nil, err
		}
		tlsArgs = []string{"--ca-file", f.CA, "--cert-file", f.Cert, "--key-file", f.Key}
	}
	p := &agentProc{IP: ip, API: ip + ":7600", DNS: ip + ":8600", ClientURL: scheme + "://" + ip + ":2379", sec: sec}
	args := append(append([]string{"agent", "--name", name, "--data-dir", filepath.Join(dir, name),
		"--client-url", p.ClientURL, "--peer-url", scheme + "://" + ip + ":2380",
		"--api-addr", p.API, "--http-addr", ip + ":7601", "--dns-addr", p.DNS, "--log-level", "error"}, tlsArgs...), extra...)
	p.cmd = exec.Command(self, args...)
	p.cmd.Env = agentEnv()
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	if _, err := waitReady(ctx, time.Now(), func(ctx context.Context) error { return sec.httpReady(ctx, scheme+"://"+ip+":7601/ready") }); err != nil {
		stop(p.cmd)
		return nil, fmt.Errorf("agent %s: %w", name, err)
	}
	return p, nil
}

// startPair starts a member and a proxy joined to it, for benchmarks that
// need two agents.
func startPair(ctx context.Context, dir string) (member, proxy *agentProc, stopAll func(), err error) {
	return startPairTLS(ctx, dir, nil)
}

// startPairTLS is startPair with TLS on every hop (sec not nil).
func startPairTLS(ctx context.Context, dir string, sec *benchTLS) (member, proxy *agentProc, stopAll func(), err error) {
	var procs []*agentProc
	stopAll = func() {
		for _, p := range procs {
			stop(p.cmd)
		}
	}
	start := func(name string, extra ...string) (*agentProc, error) {
		p, err := startAgentTLS(ctx, dir, name, sec, extra...)
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
	return ownAgentTLS(ctx, name, false)
}

// ownAgentTLS is ownAgent, with TLS on every hop under a CA of its own
// when withTLS.
func ownAgentTLS(ctx context.Context, name string, withTLS bool) (a *agentProc, done func(), err error) {
	dir, err := os.MkdirTemp("", "beacon-"+name+"-")
	if err != nil {
		return nil, nil, err
	}
	var sec *benchTLS
	if withTLS {
		if sec, err = newBenchTLS(filepath.Join(dir, "pki")); err != nil {
			os.RemoveAll(dir)
			return nil, nil, err
		}
	}
	a, err = startAgentTLS(ctx, dir, name, sec)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return a, func() { stop(a.cmd); os.RemoveAll(dir) }, nil
}

// agentEnv is the environment of an agent the benchmark starts: the
// loader's, less the TLS files the CLI may have there for its own use
// (the agent would take them as its own configuration).
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BEACON_CA_FILE=") && !strings.HasPrefix(kv, "BEACON_CERT_FILE=") && !strings.HasPrefix(kv, "BEACON_KEY_FILE=") {
			env = append(env, kv)
		}
	}
	return env
}
