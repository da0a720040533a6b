package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Issue 9: everything a client can make the agent hold has a bound, on
// the agent as a whole too (the per-connection bounds are in
// limits_test.go).

// openConfigWatch opens a Config.Watch of prefix and reads its first
// answer (the snapshot); after that the caller never reads it again. The
// error is the agent's refusal, if it refused the call.
func openConfigWatch(ctx context.Context, cc *grpc.ClientConn, prefix string) (beaconpb.Config_WatchClient, error) {
	w, err := beaconpb.NewConfigClient(cc).Watch(ctx, &beaconpb.ConfigWatchRequest{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	if _, err := w.Recv(); err != nil {
		return nil, err
	}
	return w, nil
}

// fromAddr dials the agent from the source address ip (127.0.0.0/8 is
// all the loopback's).
func fromAddr(ip string) grpc.DialOption {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
}

// (a) Never-read Config.Watch streams over several connections, each
// well under max-streams-per-connection: past max-streams (50 here) the
// agent refuses them naming the key, and its goroutines stay near what
// the admitted streams cost. The review's 6 × 2,000 such streams took an
// agent from 89 goroutines to 12,110, all admitted; here 1,000 are
// tried.
func TestAgentWideStreamLimit(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--max-streams", "50")
	a.WaitReady(readyWithin)
	before, err := metric(a, "go_goroutines")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const conns, perConn = 5, 200
	var (
		mu       sync.Mutex
		admitted int
		refused  int
		other    []error
		held     []beaconpb.Config_WatchClient
		wg       sync.WaitGroup
	)
	for i := 0; i < conns; i++ {
		cc := rawConn(t, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perConn; j++ {
				w, err := openConfigWatch(ctx, cc, fmt.Sprintf("w%d/", j%10))
				mu.Lock()
				switch st := status.Convert(err); {
				case err == nil:
					admitted++
					held = append(held, w)
				case st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "its limit (max-streams 50)"):
					refused++
				default:
					other = append(other, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("%d streams failed otherwise than refused by max-streams, the first: %v", len(other), other[0])
	}
	after, err := metric(a, "go_goroutines")
	if err != nil {
		t.Fatal(err)
	}
	rss, _ := metric(a, "process_resident_memory_bytes")
	t.Logf("goroutines %v before, %v with %d streams held and %d refused; RSS %.1f MB", before, after, admitted, refused, rss/1e6)
	// Each admitted stream costs about a goroutine (its handler); the
	// 950 refused ones must cost none.
	if after-before > 300 {
		t.Fatalf("goroutines went from %v to %v with %d streams admitted: want at most 300 more", before, after, admitted)
	}
	if admitted != 50 || refused != conns*perConn-50 {
		t.Fatalf("%d streams admitted and %d refused naming max-streams 50; want 50 and %d", admitted, refused, conns*perConn-50)
	}
	if len(held) != 50 {
		t.Fatalf("%d streams held", len(held))
	}
}

// (b) One client address may hold max-connections-per-client
// connections; the next one from it is closed at once (the call on it
// fails Unavailable well before its deadline, it does not hang; the CLI
// says which keys to look at) and the agent logs and counts the refusal
// naming the key, while a client at another address still connects.
// The CLI's connections to the agent come from 127.0.0.1, the source
// Linux gives to every 127/8 destination.
func TestConnectionsPerClientLimit(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--max-connections-per-client", "4")
	a.WaitReady(readyWithin)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < 4; i++ {
		if _, err := openConfigWatch(ctx, rawConn(t, a, fromAddr("127.0.0.1")), "c/"); err != nil {
			t.Fatalf("connection %d from 127.0.0.1: %v", i+1, err)
		}
	}

	callCtx, callCancel := context.WithTimeout(ctx, 30*time.Second)
	defer callCancel()
	_, err := beaconpb.NewConfigClient(rawConn(t, a, fromAddr("127.0.0.1"))).Get(callCtx, &beaconpb.ConfigGetRequest{Key: "c/k"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a 5th connection from 127.0.0.1: %v; want it closed at once (Unavailable)", err)
	}
	_, stderr, err := a.CLI("config", "get", "c/k")
	if err == nil || !strings.Contains(stderr, "max-connections-per-client") {
		t.Fatalf("the CLI from 127.0.0.1: %v: %q; want a line pointing at max-connections-per-client", err, stderr)
	}
	t.Logf("the CLI says: %s", strings.TrimSpace(stderr))
	if n, err := metric(a, `beacon_api_connections_refused_total{limit="max-connections-per-client"}`); err != nil || n < 2 {
		t.Fatalf("refusals counted: %v %v; want at least 2", n, err)
	}
	if err := testcluster.Eventually(10*time.Second, func() error {
		if !strings.Contains(a.Log(), "refused an API connection over its limit") || !strings.Contains(a.Log(), "max-connections-per-client") {
			return fmt.Errorf("no line naming max-connections-per-client in the agent's log")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	if _, err := openConfigWatch(ctx, rawConn(t, a, fromAddr("127.0.0.2")), "c/"); err != nil {
		t.Fatalf("a connection from 127.0.0.2: %v", err)
	}
}

// (b) on the TLS listener: the bound holds under TLS, and a connection
// over it is closed before its handshake.
func TestConnectionsPerClientLimitTLS(t *testing.T) {
	c := testcluster.New(t)
	p := newFleetPKI(t)
	a := tlsHost(c, p, "a")
	p.client("ops")
	a.Start(append(p.flags("a"), "--max-connections-per-client", "2")...)
	waitReadyTLS(t, p, a)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	creds := grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS("ops")))
	for i := 0; i < 2; i++ {
		if _, err := openConfigWatch(ctx, rawConn(t, a, creds, fromAddr("127.0.0.2")), "c/"); err != nil {
			t.Fatalf("TLS connection %d from 127.0.0.2: %v", i+1, err)
		}
	}
	callCtx, callCancel := context.WithTimeout(ctx, 30*time.Second)
	defer callCancel()
	_, err := beaconpb.NewConfigClient(rawConn(t, a, creds, fromAddr("127.0.0.2"))).Get(callCtx, &beaconpb.ConfigGetRequest{Key: "c/k"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a 3rd TLS connection from 127.0.0.2: %v; want it closed at once (Unavailable)", err)
	}
	if _, err := openConfigWatch(ctx, rawConn(t, a, creds, fromAddr("127.0.0.3")), "c/"); err != nil {
		t.Fatalf("a TLS connection from 127.0.0.3: %v", err)
	}
}

// (c) A Config.Watch whose client never reads while 1 MiB values are
// written is cut off once the changes it left unread pass
// max-watch-buffer-bytes (4 MiB here; 24 changes, far under the 4,096 of
// the count bound), while its client still reads nothing; when it reads,
// it gets what was on its way, then ResourceExhausted naming the key.
func TestConfigWatchCutOffByBytes(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--max-watch-buffer-bytes", "4194304")
	a.WaitReady(readyWithin)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The smallest windows gRPC allows, so the agent's sends block early.
	cc := rawConn(t, a, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	w, err := openConfigWatch(ctx, cc, "big/")
	if err != nil {
		t.Fatal(err)
	}
	writer := beaconpb.NewConfigClient(rawConn(t, a))
	const puts = 24
	value := bytes.Repeat([]byte("v"), 1<<20)
	for i := 0; i < puts; i++ {
		if _, err := writer.Put(ctx, &beaconpb.ConfigPutRequest{Key: fmt.Sprintf("big/%d", i), Value: value}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	waitMetric(t, a, `beacon_watchers_cut_off_total{limit="max-watch-buffer-bytes"}`, 1, 60*time.Second)

	changes := 0
	for {
		msg, err := w.Recv()
		if err == nil {
			changes += len(msg.Changes)
			if changes >= puts {
				t.Fatalf("the watcher got all %d changes: it was never cut off", changes)
			}
			continue
		}
		t.Logf("the client read %d changes, then %v", changes, err)
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "(max-watch-buffer-bytes 4194304)") {
			t.Fatalf("the watch ended with %v, want ResourceExhausted naming max-watch-buffer-bytes 4194304", err)
		}
		return
	}
}
