package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/dnsserver"
	"github.com/beaconhq/beacon/registry"
)

// The test binary plays `beacon bench plain-dns` when DNS starts it as
// its plain process (what cmd/beacon wires to PlainDNS).
func init() {
	if len(os.Args) < 3 || os.Args[1] != "bench" || os.Args[2] != "plain-dns" {
		return
	}
	fs := flag.NewFlagSet("plain-dns", flag.ExitOnError)
	from, name, qtype := fs.String("from", "", ""), fs.String("name", "", ""), fs.String("type", "", "")
	_ = fs.Parse(os.Args[3:])
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := PlainDNS(ctx, os.Stdout, *from, *name, *qtype)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// dnsCatalog is a fixed catalog: web with three passing instances.
type dnsCatalog struct{ web []*registry.Instance }

func (c dnsCatalog) Service(name string) []*registry.Instance {
	if name == "web" {
		return c.web
	}
	return nil
}

func (dnsCatalog) Node(string) (cluster.NodeInfo, bool) { return cluster.NodeInfo{}, false }

func startDNS(t *testing.T) string {
	t.Helper()
	var cat dnsCatalog
	for i, a := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		cat.web = append(cat.web, &registry.Instance{ID: "web-" + string(rune('1'+i)), Service: "web", Address: a, Port: 8080, Weight: 1, Status: registry.StatusPassing})
	}
	s, err := dnsserver.New(dnsserver.Config{Addr: "127.0.0.1:0"}, cat)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s.Addr()
}

func TestDNSBench(t *testing.T) {
	addr := startDNS(t)
	for _, o := range []DNSOptions{
		{Addr: addr, Name: "web.service.beacon", Duration: 300 * time.Millisecond, Sockets: 2, Concurrency: 2},
		{Addr: addr, Name: "web.service.beacon.", Type: "a", Duration: 300 * time.Millisecond, Rate: 2000},
		{Addr: addr, Name: "web.service.beacon.", Duration: 300 * time.Millisecond, PlainProcess: true},
	} {
		var out bytes.Buffer
		if err := DNS(context.Background(), &out, o); err != nil {
			t.Fatalf("%+v: %v\n%s", o, err, out.String())
		}
		for _, want := range []string{"beacon " + addr, "plain miekg/dns", "ratio beacon/plain", "target:"} {
			if !strings.Contains(out.String(), want) {
				t.Fatalf("no %q in:\n%s", want, out.String())
			}
		}
		t.Logf("\n%s", out.String())
	}
	var out bytes.Buffer
	if err := DNS(context.Background(), &out, DNSOptions{Addr: addr, Name: "nope.service.beacon.", Duration: time.Second}); err == nil {
		t.Fatal("a name without answer was benchmarked")
	}
}
