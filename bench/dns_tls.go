package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/miekg/dns"
)

// dnsTLS is `beacon bench --tls dns`: two pairs of agents (a member and a
// proxy), one with TLS on every hop, each with three instances of "web";
// the same DNS load on each, in turns (the order swapped each round), and
// the medians of queries/s and p99 side by side. DNS itself is plain UDP:
// what TLS could cost it is the agents' busier CPUs and the catalog's
// watch over TLS.
func dnsTLS(ctx context.Context, w io.Writer, o DNSOptions, rounds int) error {
	dir, err := os.MkdirTemp("", "beacon-bench-dns-tls-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	plain, err := startWebPair(ctx, filepath.Join(dir, "plain"))
	if err != nil {
		return err
	}
	defer plain.stop()
	sec, err := newBenchTLS(filepath.Join(dir, "pki"))
	if err != nil {
		return err
	}
	secure, err := startWebPairTLS(ctx, filepath.Join(dir, "tls"), sec)
	if err != nil {
		return err
	}
	defer secure.stop()
	o.Name = "web.service.beacon."
	pairs := []*webPair{plain, secure}
	for _, p := range pairs {
		for _, ag := range p.agents {
			if err := waitAnswer(ctx, ag.p.DNS, o.Name); err != nil {
				return err
			}
		}
	}
	q := new(dns.Msg)
	q.SetQuestion(o.Name, dns.TypeSRV)
	q.SetEdns0(1232, false)
	query, err := q.Pack()
	if err != nil {
		return err
	}
	o = o.withDefaults()
	fmt.Fprintf(w, "beacon bench dns --tls: SRV %s at %s, %s a run; agents with TLS off and on take turns, %d rounds, medians:\n\n",
		o.Name, loadMode(o), o.Duration, rounds)
	fmt.Fprintf(w, "%-8s %14s %14s %8s %12s %12s %8s\n", "", "q/s "+tlsName(false), "q/s "+tlsName(true), "ratio", "p99 off", "p99 on", "ratio")
	for i := range plain.agents {
		var qps [2][]time.Duration // queries/s, in a Duration to share median
		var p99 [2][]time.Duration
		for r := range rounds {
			for k := range 2 {
				which := (k + r) % 2
				addr := pairs[which].agents[i].p.DNS
				if _, err := dnsLoad(ctx, addr, query, o, min(o.Duration/10, time.Second)); err != nil {
					return err
				}
				res, err := dnsLoad(ctx, addr, query, o, o.Duration)
				if err != nil {
					return err
				}
				qps[which] = append(qps[which], time.Duration(res.qps()))
				p99[which] = append(p99[which], res.pct(0.99))
			}
		}
		self := func(d time.Duration) time.Duration { return d }
		q0, q1 := median(qps[0], self), median(qps[1], self)
		l0, l1 := median(p99[0], self), median(p99[1], self)
		fmt.Fprintf(w, "%-8s %14d %14d %7.2fx %10.3fms %10.3fms %7.2fx\n", plain.agents[i].label,
			int64(q0), int64(q1), float64(q1)/float64(max(q0, 1)), ms(l0), ms(l1), float64(l1)/float64(max(l0, 1)))
	}
	return nil
}
