package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DNSAgent runs `beacon bench dns` against agents it starts itself: a
// member (embedding etcd) and a proxy joined to it, with three instances
// of "web" registered, measured against the fixed-answer server.
//
// With instances > 0 it starts a second such pair and loads that many
// more instances into it (over 1000 other services). Then the empty and
// the loaded agents take turns under the same load, rounds times, the
// order swapped each round, so that whatever else the machine does falls
// on both alike; it reports the median p99 of each and their ratio, and
// each agent's resident memory.
func DNSAgent(ctx context.Context, w io.Writer, o DNSOptions, instances, rounds int) error {
	if CompareTLS {
		return dnsTLS(ctx, w, o, rounds)
	}
	dir, err := os.MkdirTemp("", "beacon-bench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	empty, err := startWebPair(ctx, filepath.Join(dir, "empty"))
	if err != nil {
		return err
	}
	defer empty.stop()
	o.Name = "web.service.beacon."
	for _, ag := range empty.agents {
		o.Addr = ag.p.DNS
		if err := waitAnswer(ctx, ag.p.DNS, o.Name); err != nil {
			return err
		}
		fmt.Fprintf(w, "--- %s agent\n", ag.label)
		if _, err := dnsRun(ctx, w, o); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if instances == 0 {
		return nil
	}

	loaded, err := startWebPair(ctx, filepath.Join(dir, "loaded"))
	if err != nil {
		return err
	}
	defer loaded.stop()
	fmt.Fprintf(w, "a second pair of agents: loading %d instances over 1000 other services...\n", instances)
	t0 := time.Now()
	if err := loadInstances(ctx, loaded.agents[0].p.ClientURL, instances); err != nil {
		return err
	}
	last := fmt.Sprintf("load%d.service.beacon.", (instances-1)%1000)
	for _, ag := range loaded.agents {
		if err := waitAnswer(ctx, ag.p.DNS, last); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "loaded and in both agents' catalogs after %s\n", time.Since(t0).Round(time.Millisecond))
	// The burst leaves etcd compacting and snapshotting its log for a while;
	// measure the steady state of agents holding the catalog, not that.
	settled := waitIdle(ctx, loaded.agents[0].p.cmd.Process.Pid, 0.05, 60*time.Second)
	fmt.Fprintf(w, "loaded member settled (under 5%% CPU) after %s more\n\n", settled.Round(time.Millisecond))

	q := new(dns.Msg)
	q.SetQuestion(o.Name, dns.TypeSRV)
	q.SetEdns0(1232, false)
	query, err := q.Pack()
	if err != nil {
		return err
	}
	o = o.withDefaults()
	fmt.Fprintf(w, "p99 ms of SRV %s at %s, %s a run; empty and loaded agents take turns, %d rounds:\n\n", o.Name, loadMode(o), o.Duration, rounds)
	fmt.Fprintf(w, "%-22s", "")
	for r := range rounds {
		fmt.Fprintf(w, " %8s", fmt.Sprintf("round %d", r+1))
	}
	fmt.Fprintf(w, " %8s %8s\n", "median", "ratio")
	for i := range empty.agents {
		p99s := [2][]time.Duration{}
		for r := range rounds {
			for k := range 2 {
				which := (k + r) % 2 // 0 empty, 1 loaded; swapped each round
				pair := []*webPair{empty, loaded}[which]
				if _, err := dnsLoad(ctx, pair.agents[i].p.DNS, query, o, min(o.Duration/10, time.Second)); err != nil {
					return err
				}
				res, err := dnsLoad(ctx, pair.agents[i].p.DNS, query, o, o.Duration)
				if err != nil {
					return err
				}
				p99s[which] = append(p99s[which], res.pct(0.99))
			}
		}
		self := func(d time.Duration) time.Duration { return d }
		med := [2]time.Duration{median(p99s[0], self), median(p99s[1], self)}
		ratio := float64(med[1]) / float64(max(med[0], 1))
		for which, label := range []string{"empty", fmt.Sprintf("%d inst.", instances)} {
			fmt.Fprintf(w, "%-22s", empty.agents[i].label+" "+label)
			for _, d := range p99s[which] {
				fmt.Fprintf(w, " %8.3f", ms(d))
			}
			fmt.Fprintf(w, " %8.3f", ms(med[which]))
			if which == 1 {
				fmt.Fprintf(w, " %7.2fx   target ≤ 1.20x: %s", ratio, okIf(ratio <= 1.2))
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintln(w)
	for i, ag := range empty.agents {
		e, _ := rssKB(ag.p.cmd.Process.Pid)
		l, _ := rssKB(loaded.agents[i].p.cmd.Process.Pid)
		fmt.Fprintf(w, "%-22s %8.1f MB empty, %8.1f MB with %d instances   target < 300 MB: %s\n", ag.label+" RSS", float64(e)/1024, float64(l)/1024, instances, okIf(l < 300*1024))
	}
	fmt.Fprintln(w, "\nthe member agent also embeds the etcd member that stores the instances; the proxy agent holds only its catalog.")
	return nil
}

// webPair is a member and a proxy joined to it, with three instances of
// "web" registered.
type webPair struct {
	agents []labeledAgent // the member, then the proxy
	stop   func()
}

type labeledAgent struct {
	label string
	p     *agentProc
}

func startWebPair(ctx context.Context, dir string) (*webPair, error) {
	return startWebPairTLS(ctx, dir, nil)
}

// startWebPairTLS is startWebPair with TLS on every hop (sec not nil).
func startWebPairTLS(ctx context.Context, dir string, sec *benchTLS) (*webPair, error) {
	member, proxy, stopAll, err := startPairTLS(ctx, dir, sec)
	if err != nil {
		return nil, err
	}
	c, err := member.client()
	if err != nil {
		stopAll()
		return nil, err
	}
	defer c.Close()
	for i := 1; i <= 3; i++ {
		if _, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{
			Service: "web", Id: fmt.Sprintf("web%d", i), Address: fmt.Sprintf("127.0.0.%d", 10+i), Port: 8080, Weight: uint32(i)}}); err != nil {
			stopAll()
			return nil, err
		}
	}
	return &webPair{agents: []labeledAgent{{"member", member}, {"proxy", proxy}}, stop: stopAll}, nil
}

func waitAnswer(ctx context.Context, addr, name string) error {
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if r, _, err := c.ExchangeContext(ctx, q, addr); err == nil && len(r.Answer) > 0 {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered %s", addr, name)
}

// loadInstances writes n instances straight to etcd, as n registrations
// from elsewhere in a fleet would arrive through the watch.
func loadInstances(ctx context.Context, endpoint string, n int) error {
	cli, err := newEtcdClient(endpoint)
	if err != nil {
		return err
	}
	defer cli.Close()
	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		return err
	}
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for wkr := 0; wkr < workers; wkr++ {
		wg.Add(1)
		go func(wkr int) {
			defer wg.Done()
			for i := wkr; i < n; i += workers {
				svc := fmt.Sprintf("load%d", i%1000)
				id := fmt.Sprintf("i%d", i)
				b, _ := json.Marshal(map[string]any{"id": id, "service": svc, "node": fmt.Sprintf("node%d", i%500),
					"address": fmt.Sprintf("127.%d.%d.%d", 100+i>>16&127, i>>8&255, 1+i%250), "port": 8000 + i%1000,
					"tags": []string{"load"}, "weight": 1, "priority": 0, "status": "passing"})
				if _, err := cli.Put(ctx, "/beacon/services/"+svc+"/"+id, string(b), clientv3.WithLease(lease.ID)); err != nil {
					errs <- err
					return
				}
			}
		}(wkr)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitIdle waits until the process uses less than frac of a CPU over a
// second, or until limit; it returns how long it waited.
func waitIdle(ctx context.Context, pid int, frac float64, limit time.Duration) time.Duration {
	start := time.Now()
	prev, err := cpuTicks(pid)
	for err == nil && time.Since(start) < limit && ctx.Err() == nil {
		time.Sleep(time.Second)
		cur, cerr := cpuTicks(pid)
		if cerr != nil {
			break
		}
		if float64(cur-prev)/100 < frac { // 100 clock ticks a second on Linux
			break
		}
		prev = cur
	}
	return time.Since(start)
}

// cpuTicks is the process's user+system time in clock ticks.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}
