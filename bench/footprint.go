// Package bench holds beacon's benchmark commands. Each runs the same work
// the plain way (bare etcd, raw clientv3, etcd's own recipes) in the same
// run and prints both and their ratio.
package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// FootprintOptions tune `beacon bench agent`.
type FootprintOptions struct {
	Runs int           // starts measured per kind
	Idle time.Duration // how long a process idles before its RSS is read
}

// sample is one start of one kind of process.
type sample struct {
	ready time.Duration
	rssKB int
}

// Footprint measures start-to-ready and idle resident memory of a beacon
// member agent and a beacon proxy agent, beside a bare embedded etcd and
// etcd's bare grpc-proxy started from the same binary.
func Footprint(ctx context.Context, w io.Writer, o FootprintOptions) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "beacon-bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	kinds := []string{"member", "plain-member", "proxy", "plain-proxy"}
	results := map[string][]sample{}
	for run := 0; run < o.Runs; run++ {
		for _, kind := range kinds {
			s, err := measureOnce(ctx, self, filepath.Join(tmp, fmt.Sprintf("%s-%d", kind, run)), kind, o.Idle)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", kind, run+1, err)
			}
			results[kind] = append(results[kind], s)
		}
	}

	fmt.Fprintf(w, "beacon bench agent: %d runs each, RSS read after %s idle\n\n", o.Runs, o.Idle)
	fmt.Fprintf(w, "%-24s %14s %14s %8s   %s\n", "", "beacon", "plain etcd", "ratio", "target")
	row := func(label string, b, p float64, unit, target string) {
		fmt.Fprintf(w, "%-24s %11.1f %-2s %11.1f %-2s %7.2fx   %s\n", label, b, unit, p, unit, b/p, target)
	}
	mb, pm := results["member"], results["plain-member"]
	xb, xp := results["proxy"], results["plain-proxy"]
	row("member start→ready p50", ms(median(mb, readyOf)), ms(median(pm, readyOf)), "ms", verdict(median(mb, readyOf) <= 2*time.Second, "≤ 2000 ms"))
	row("member start→ready max", ms(maxOf(mb, readyOf)), ms(maxOf(pm, readyOf)), "ms", "")
	row("member RSS idle p50", mib(median(mb, rssOf)), mib(median(pm, rssOf)), "MB", verdict(mib(median(mb, rssOf)) <= 80, "≤ 80 MB"))
	row("proxy start→ready p50", ms(median(xb, readyOf)), ms(median(xp, readyOf)), "ms", verdict(median(xb, readyOf) <= 2*time.Second, "≤ 2000 ms"))
	row("proxy RSS idle p50", mib(median(xb, rssOf)), mib(median(xp, rssOf)), "MB", verdict(mib(median(xb, rssOf)) <= 40, "≤ 40 MB"))
	fmt.Fprintln(w, "\nbeacon: the full agent (API, HTTP, node record); plain: bare embed.StartEtcd / etcd's grpcproxy on the same client.")
	return nil
}

func verdict(ok bool, target string) string {
	if ok {
		return target + " ok"
	}
	return target + " MISSED"
}

func readyOf(s sample) time.Duration { return s.ready }
func rssOf(s sample) time.Duration   { return time.Duration(s.rssKB) }

func median[T any](ss []T, f func(T) time.Duration) time.Duration {
	v := make([]time.Duration, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[len(v)/2]
}

func maxOf(ss []sample, f func(sample) time.Duration) time.Duration {
	var m time.Duration
	for _, s := range ss {
		m = max(m, f(s))
	}
	return m
}

func ms(d time.Duration) float64   { return float64(d) / float64(time.Millisecond) }
func mib(kb time.Duration) float64 { return float64(kb) / 1024 }

// host is a fresh loopback address, so runs never collide on ports.
func host() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[2]%250)
}

// measureOnce starts one process of a kind and measures it. Proxies need a
// member to front: one is started first and not measured.
func measureOnce(ctx context.Context, self, dir, kind string, idle time.Duration) (sample, error) {
	ip := host()
	clientURL := "http://" + ip + ":2379"
	var backing string
	if strings.HasSuffix(kind, "proxy") {
		mip := host()
		backing = "http://" + mip + ":2379"
		m := exec.Command(self, "bench", "plain-member", "--data-dir", dir+"-backing", "--client-url", backing, "--peer-url", "http://"+mip+":2380")
		if err := m.Start(); err != nil {
			return sample{}, err
		}
		defer stop(m)
		if _, err := waitReady(ctx, time.Now(), func(ctx context.Context) error { return etcdGet(ctx, backing) }); err != nil {
			return sample{}, fmt.Errorf("backing member: %w", err)
		}
	}

	var cmd *exec.Cmd
	var probe func(context.Context) error
	switch kind {
	case "member", "proxy":
		args := []string{"agent", "--name", "bench", "--data-dir", dir, "--client-url", clientURL, "--peer-url", "http://" + ip + ":2380",
			"--api-addr", ip + ":7600", "--http-addr", ip + ":7601", "--dns-addr", ip + ":8600", "--log-level", "error"}
		if kind == "proxy" {
			args = append(args, "--role", "proxy", "--join", backing)
		}
		cmd = exec.Command(self, args...)
		probe = func(ctx context.Context) error { return httpReady(ctx, "http://"+ip+":7601/ready") }
	case "plain-member":
		cmd = exec.Command(self, "bench", "plain-member", "--data-dir", dir, "--client-url", clientURL, "--peer-url", "http://"+ip+":2380")
		probe = func(ctx context.Context) error { return etcdGet(ctx, clientURL) }
	case "plain-proxy":
		cmd = exec.Command(self, "bench", "plain-proxy", "--join", backing, "--client-url", clientURL)
		probe = func(ctx context.Context) error { return etcdGet(ctx, clientURL) }
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	defer stop(cmd)
	ready, err := waitReady(ctx, start, probe)
	if err != nil {
		return sample{}, err
	}
	select {
	case <-ctx.Done():
		return sample{}, ctx.Err()
	case <-time.After(idle):
	}
	rss, err := rssKB(cmd.Process.Pid)
	return sample{ready: ready, rssKB: rss}, err
}

// waitReady polls probe every 5 ms; the poll interval bounds the error of
// the start-to-ready figure.
func waitReady(ctx context.Context, start time.Time, probe func(context.Context) error) (time.Duration, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := probe(pctx)
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("not ready after 30s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func httpReady(ctx context.Context, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// etcdGet probes an etcd endpoint: a TCP connect first, which fails fast
// while nothing listens (a clientv3 dial would back off instead and skew
// the figure), then a read.
func etcdGet(ctx context.Context, endpoint string) error {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), 100*time.Millisecond)
	if err != nil {
		return err
	}
	c.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 500 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Get(ctx, "ready")
	return err
}

func rssKB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
