package session

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// relay forwards loopback TCP connections to an etcd member. Frozen, it
// goes silent: it keeps reading what either side sends and forwards
// nothing, so the connections stay open but no request gets an answer
// (the application-level picture of a member cut off by a dropping
// switch; the kernel still acknowledges, so only what watches answers
// notices).
type relay struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	bytes  atomic.Int64 // forwarded, both ways

	mu    sync.Mutex
	conns []net.Conn
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target}
	go r.serve()
	t.Cleanup(func() { r.close() })
	return r
}

func (r *relay) endpoint() string { return "http://" + r.ln.Addr().String() }

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, c, u)
		r.mu.Unlock()
		go r.pump(u, c)
		go r.pump(c, u)
	}
}

func (r *relay) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !r.frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			r.bytes.Add(int64(n))
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// heal ends the silence the way a healed link is found by a client whose
// connection timed out: the old connections are closed, new ones work.
func (r *relay) heal() {
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.frozen.Store(false)
}

func (r *relay) close() {
	r.ln.Close()
	r.heal()
}

// relayed returns a client whose endpoints are two relays in front of the
// member at endpoint, with no gRPC keepalive: a frozen relay is never
// found out by the transport, only by what KeepLease does about it.
func relayed(t *testing.T, endpoint string) (*clientv3.Client, []*relay) {
	t.Helper()
	target := strings.TrimPrefix(endpoint, "http://")
	rs := []*relay{newRelay(t, target), newRelay(t, target)}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{rs[0].endpoint(), rs[1].endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, rs
}

// busiest returns the relay that forwards the most within d: with only a
// lease being kept alive, the one its keepalive stream runs through.
func busiest(rs []*relay, d time.Duration) *relay {
	before := []int64{rs[0].bytes.Load(), rs[1].bytes.Load()}
	time.Sleep(d)
	if rs[0].bytes.Load()-before[0] >= rs[1].bytes.Load()-before[1] {
		return rs[0]
	}
	return rs[1]
}

func startKeepLease(t *testing.T, cli *clientv3.Client, lease clientv3.LeaseID, ttl time.Duration) (cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		ch <- KeepLease(ctx, cli, cli, lease, ttl)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("KeepLease did not return within 10s of its context's end")
		}
	})
	return cancel, ch
}

// The member a lease's keepalive stream runs to goes silent: KeepLease
// renews the lease through the other connection before it can expire,
// for three TTLs and more. (A bare clientv3 KeepAlive lets it expire:
// its stream waits for an answer that never comes.)
func TestKeepLeaseSurvivesSilentMember(t *testing.T) {
	direct, _ := etcdtest.New(t)
	cli, rs := relayed(t, direct.Endpoints()[0])
	const ttl = 2 * time.Second // etcd's least with its default election timeout
	g, err := cli.Grant(context.Background(), int64(ttl/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, done := startKeepLease(t, cli, g.ID, ttl)

	// Both connections are up (the grant used one), and the stream's
	// is the one that renews.
	if _, err := cli.Get(context.Background(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	cut := busiest(rs, 1500*time.Millisecond)
	cut.frozen.Store(true)
	cutAt := time.Now()

	for time.Since(cutAt) < 3*ttl+time.Second {
		select {
		case err := <-done:
			t.Fatalf("KeepLease returned %v %s after the cut", err, time.Since(cutAt).Round(time.Millisecond))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := direct.TimeToLive(ctx, g.ID)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if resp.TTL == -1 { // 0 is alive, with less than a second left
			t.Fatalf("the lease expired %s after the connection its keepalive ran on went silent", time.Since(cutAt).Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A lease etcd revoked: KeepLease says so by the next renewal.
func TestKeepLeaseGone(t *testing.T) {
	cli, _ := etcdtest.New(t)
	g, err := cli.Grant(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	_, done := startKeepLease(t, cli, g.ID, 10*time.Second)
	if _, err := cli.Revoke(context.Background(), g.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseGone) {
			t.Fatalf("KeepLease returned %v, want ErrLeaseGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("KeepLease still keeps a revoked lease 5s later")
	}
}

// Every connection silent past the TTL: the lease expires in etcd, and
// once the links heal KeepLease answers ErrLeaseGone (it neither hangs
// nor claims a lease that is gone); while etcd cannot be asked it waits.
func TestKeepLeaseExpiredWhileCutOff(t *testing.T) {
	direct, _ := etcdtest.New(t)
	cli, rs := relayed(t, direct.Endpoints()[0])
	const ttl = 2 * time.Second
	g, err := cli.Grant(context.Background(), int64(ttl/time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, done := startKeepLease(t, cli, g.ID, ttl)
	if _, err := cli.Get(context.Background(), "warm-up"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		r.frozen.Store(true)
	}
	deadline := time.Now().Add(3 * ttl)
	for {
		resp, err := direct.TimeToLive(context.Background(), g.ID)
		if err != nil {
			t.Fatal(err)
		}
		if resp.TTL == -1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease still lives (TTL %ds) %s after every connection went silent", resp.TTL, 3*ttl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("KeepLease returned %v while etcd could not be asked", err)
	default:
	}
	for _, r := range rs {
		r.heal()
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeaseGone) {
			t.Fatalf("KeepLease returned %v, want ErrLeaseGone", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KeepLease did not report the expired lease within 10s of the heal")
	}
}

// Canceling the context ends KeepLease with the context's error.
func TestKeepLeaseCanceled(t *testing.T) {
	cli, _ := etcdtest.New(t)
	g, err := cli.Grant(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := startKeepLease(t, cli, g.ID, 10*time.Second)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("KeepLease returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("KeepLease did not return within 5s of its context's end")
	}
}
