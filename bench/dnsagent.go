package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DNSAgent runs `beacon bench dns` against agents it starts itself: a
// member (embedding etcd) and a proxy joined to it, with three instances
// of "web" registered. With instances > 0 it then loads that many more
// instances (over 1000 other services) and measures again, reporting each
// agent's p99 against its empty case and its resident memory.
func DNSAgent(ctx context.Context, w io.Writer, o DNSOptions, instances int) error {
	dir, err := os.MkdirTemp("", "beacon-bench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	member, proxy, stopAll, err := startPair(ctx, dir)
	if err != nil {
		return err
	}
	defer stopAll()
	c, err := client.New(member.API)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 1; i <= 3; i++ {
		if _, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{
			Service: "web", Id: fmt.Sprintf("web%d", i), Address: fmt.Sprintf("127.0.0.%d", 10+i), Port: 8080, Weight: uint32(i)}}); err != nil {
			return err
		}
	}
	o.Name = "web.service.beacon."
	agents := []struct {
		label string
		p     *agentProc
	}{{"member", member}, {"proxy", proxy}}
	measureAll := func() ([]DNSFigures, []int, error) {
		var figs []DNSFigures
		var rss []int
		for _, ag := range agents {
			o.Addr = ag.p.DNS
			if err := waitAnswer(ctx, ag.p.DNS, o.Name); err != nil {
				return nil, nil, err
			}
			fmt.Fprintf(w, "--- %s agent\n", ag.label)
			f, err := dnsRun(ctx, w, o)
			if err != nil {
				return nil, nil, err
			}
			kb, _ := rssKB(ag.p.cmd.Process.Pid)
			figs, rss = append(figs, f), append(rss, kb)
			fmt.Fprintln(w)
		}
		return figs, rss, nil
	}
	empty, rssEmpty, err := measureAll()
	if err != nil || instances == 0 {
		return err
	}

	fmt.Fprintf(w, "loading %d instances over 1000 other services...\n", instances)
	t0 := time.Now()
	if err := loadInstances(ctx, member.ClientURL, instances); err != nil {
		return err
	}
	last := fmt.Sprintf("load%d.service.beacon.", (instances-1)%1000)
	for _, ag := range agents {
		if err := waitAnswer(ctx, ag.p.DNS, last); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "loaded and in both agents' catalogs after %s\n", time.Since(t0).Round(time.Millisecond))
	// The burst leaves etcd compacting and snapshotting its log for a while;
	// measure the steady state of agents holding the catalog, not that.
	settled := waitIdle(ctx, member.cmd.Process.Pid, 0.05, 60*time.Second)
	fmt.Fprintf(w, "member settled (under 5%% CPU) after %s more\n\n", settled.Round(time.Millisecond))
	full, rssFull, err := measureAll()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%-34s %12s %12s %8s\n", "", "empty", fmt.Sprintf("%d inst.", instances), "ratio")
	for i, ag := range agents {
		ratio := float64(full[i].P99) / float64(max(empty[i].P99, 1))
		fmt.Fprintf(w, "%-34s %12.3f %12.3f %7.2fx   target ≤ 1.20x: %s\n", ag.label+" DNS p99 ms", ms(empty[i].P99), ms(full[i].P99), ratio, okIf(ratio <= 1.2))
		fmt.Fprintf(w, "%-34s %12.1f %12.1f %7.2fx   target < 300 MB: %s\n", ag.label+" RSS MB", float64(rssEmpty[i])/1024, float64(rssFull[i])/1024,
			float64(rssFull[i])/float64(max(rssEmpty[i], 1)), okIf(rssFull[i] < 300*1024))
	}
	fmt.Fprintln(w, "\nthe member agent also embeds the etcd member that stores the 100k keys; the proxy agent holds only its catalog.")
	return nil
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
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
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
