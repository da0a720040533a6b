package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/miekg/dns"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchOptions tune `beacon bench watch`. With no Agent, the benchmark
// starts its own pair: a member A and a proxy B joined to it.
type WatchOptions struct {
	Agent     string // A's API address
	DNS       string // B's DNS address
	EndpointA string // A's etcd client URL, for the plain way
	EndpointB string // B's etcd client URL, for the plain way
	Domain    string
	Samples   int
}

// Watch measures how long a registration on agent A takes to show in agent
// B's DNS answers, against the plain way: a clientv3 put through A seen by
// a clientv3 watch through B.
func Watch(ctx context.Context, w io.Writer, o WatchOptions) error {
	if o.Agent == "" {
		dir, err := os.MkdirTemp("", "beacon-bench-watch-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		a, b, stopAll, err := startPair(ctx, dir)
		if err != nil {
			return err
		}
		defer stopAll()
		o.Agent, o.DNS, o.EndpointA, o.EndpointB = a.API, b.DNS, a.ClientURL, b.ClientURL
	}
	c, err := client.New(o.Agent)
	if err != nil {
		return err
	}
	defer c.Close()
	sess, err := c.NewSession(ctx, client.WithName("bench-watch"))
	if err != nil {
		return fmt.Errorf("opening a session on %s: %w", o.Agent, err)
	}
	defer sess.Close()

	run := time.Now().UnixNano() % 100000
	dc := &dns.Client{Net: "udp", Timeout: time.Second}
	beacon := make([]time.Duration, 0, o.Samples)
	for i := 0; i < o.Samples; i++ {
		svc := fmt.Sprintf("bw%d-%d", run, i)
		q := new(dns.Msg)
		q.SetQuestion(svc+".service."+o.Domain, dns.TypeA)
		t0 := time.Now()
		if _, err := c.Registry.Register(ctx, &beaconpb.RegisterRequest{SessionId: sess.ID,
			Instance: &beaconpb.Instance{Service: svc, Address: "127.0.0.1", Port: 80}}); err != nil {
			return err
		}
		for {
			r, _, err := dc.ExchangeContext(ctx, q, o.DNS)
			if err == nil && len(r.Answer) > 0 {
				break
			}
			if time.Since(t0) > 10*time.Second {
				return fmt.Errorf("%s never appeared in the DNS at %s", svc, o.DNS)
			}
		}
		beacon = append(beacon, time.Since(t0))
	}

	plain, err := plainWatch(ctx, o, run)
	if err != nil {
		return fmt.Errorf("plain way: %w", err)
	}
	bp50, bp99 := percentiles(beacon)
	pp50, pp99 := percentiles(plain)
	fmt.Fprintf(w, "beacon bench watch: %d samples; register on A (%s), read on B (%s)\n\n", o.Samples, o.Agent, o.DNS)
	fmt.Fprintf(w, "%-30s %12s %12s %8s\n", "", "beacon", "plain", "ratio")
	fmt.Fprintf(w, "%-30s %12s %12s %7.2fx\n", "change visible p50", bp50.Round(time.Microsecond), pp50.Round(time.Microsecond), float64(bp50)/float64(pp50))
	fmt.Fprintf(w, "%-30s %12s %12s %7.2fx   target p99 < 50ms: %s\n", "change visible p99", bp99.Round(time.Microsecond), pp99.Round(time.Microsecond), float64(bp99)/float64(pp99), okIf(bp99 < 50*time.Millisecond))
	fmt.Fprintln(w, "\nbeacon: Register on A until B's DNS answers the name (B polls nothing: its catalog is watch-fed; the")
	fmt.Fprintln(w, "benchmark's DNS client queries B in a loop). plain: clientv3 Put through A until a clientv3 Watch through B fires.")
	return nil
}

func plainWatch(ctx context.Context, o WatchOptions, run int64) ([]time.Duration, error) {
	mk := func(ep string) (*clientv3.Client, error) {
		return newEtcdClient(ep)
	}
	a, err := mk(o.EndpointA)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	b, err := mk(o.EndpointB)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	prefix := fmt.Sprintf("/bench/watch-%d/", run)
	defer a.Delete(context.Background(), prefix, clientv3.WithPrefix()) //nolint:errcheck // cleanup
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := b.Watch(clientv3.WithRequireLeader(wctx), prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr := <-wch; wr.Err() != nil {
		return nil, wr.Err()
	}
	out := make([]time.Duration, 0, o.Samples)
	for i := 0; i < o.Samples; i++ {
		t0 := time.Now()
		if _, err := a.Put(ctx, fmt.Sprintf("%s%d", prefix, i), "x"); err != nil {
			return nil, err
		}
		select {
		case wr := <-wch:
			if err := wr.Err(); err != nil {
				return nil, err
			}
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("watch through B saw nothing")
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*99/100]
}

func okIf(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}
