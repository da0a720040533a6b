package dnsserver

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// goResolver is Go's own stub resolver, sending every query to addr.
func goResolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

func TestGoResolver(t *testing.T) {
	s := start(t, bigCatalog(60, 0), nil)
	r := goResolver(s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cname, srvs, err := r.LookupSRV(ctx, "web", "tcp", "service.beacon.")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range srvs {
		got = append(got, s.Target)
	}
	slices.Sort(got)
	if cname != "_web._tcp.service.beacon." || !slices.Equal(got, []string{"web-1.web.service.beacon.", "web-2.web.service.beacon.", "web-3.web.service.beacon."}) {
		t.Fatalf("LookupSRV: %q %v", cname, got)
	}
	// The targets resolve through the same resolver.
	for _, s := range srvs {
		if hosts, err := r.LookupHost(ctx, s.Target); err != nil || len(hosts) != 1 {
			t.Fatalf("LookupHost(%s): %v %v", s.Target, hosts, err)
		}
	}

	hosts, err := r.LookupHost(ctx, "web.service.beacon.")
	slices.Sort(hosts)
	if err != nil || !slices.Equal(hosts, []string{"10.0.0.1", "10.0.0.2", "fd00::3"}) {
		t.Fatalf("LookupHost: %v %v", hosts, err)
	}
	if hosts, err := r.LookupHost(ctx, "n1.node.beacon."); err != nil || !slices.Equal(hosts, []string{"192.168.1.10"}) {
		t.Fatalf("LookupHost node: %v %v", hosts, err)
	}

	// Truncated over UDP: Go's resolver asks again over TCP and gets all.
	_, srvs, err = r.LookupSRV(ctx, "big", "tcp", "service.beacon.")
	if err != nil || len(srvs) != 60 {
		t.Fatalf("LookupSRV big: %d records, %v", len(srvs), err)
	}

	var dnsErr *net.DNSError
	if _, err := r.LookupHost(ctx, "nope.service.beacon."); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("LookupHost unknown: %v", err)
	}
	if _, err := r.LookupHost(ctx, "db.service.beacon."); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("LookupHost NODATA: %v", err)
	}
}
