package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Issue 9, limits on what a client can grow.

// rawConn is a plain gRPC connection to the agent's API, one HTTP/2
// connection of its own.
func rawConn(t *testing.T, a *testcluster.Agent, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(a.APIAddr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// openSessions opens n plain sessions (no holds, no process) spread over
// conns and returns their leases.
func openSessions(t *testing.T, conns []*grpc.ClientConn, n int) []clientv3.LeaseID {
	t.Helper()
	var (
		mu     sync.Mutex
		leases []clientv3.LeaseID
		wg     sync.WaitGroup
		first  error
	)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			lease, err := openSession(conns[i%len(conns)])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			leases = append(leases, lease)
		}()
	}
	wg.Wait()
	if first != nil {
		t.Fatalf("opening %d sessions: %v", n, first)
	}
	return leases
}

// openSession opens a session on a stream that lives as long as cc.
func openSession(cc *grpc.ClientConn) (clientv3.LeaseID, error) {
	st, err := beaconpb.NewSessionClient(cc).Open(context.Background())
	if err != nil {
		return 0, err
	}
	if err := st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &beaconpb.OpenSession{Name: "limits", Ttl: durationpb.New(24 * time.Hour)}}}); err != nil {
		return 0, err
	}
	ev, err := st.Recv()
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(ev.GetOpened().GetLeaseId(), 16, 64)
	return clientv3.LeaseID(id), err
}

// leasesLeft counts which of leases etcd still has.
func leasesLeft(cli *clientv3.Client, leases []clientv3.LeaseID) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Leases(ctx)
	if err != nil {
		return 0, err
	}
	mine := map[clientv3.LeaseID]bool{}
	for _, l := range leases {
		mine[l] = true
	}
	left := 0
	for _, l := range resp.Leases {
		if mine[l.ID] {
			left++
		}
	}
	return left, nil
}

// metric reads one unlabelled sample of the agent's /metrics.
func metric(a *testcluster.Agent, name string) (float64, error) {
	return metricFrom(http.DefaultClient, "http://"+a.HTTPAddr, name)
}

// metricFrom reads one unlabelled sample of base's /metrics through hc
// (an agent serving HTTP over TLS: https and a client of the CA).
func metricFrom(hc *http.Client, base, name string) (float64, error) {
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// waitMetric polls the agent's /metrics until name has the value want.
func waitMetric(t *testing.T, a *testcluster.Agent, name string, want float64, within time.Duration) {
	t.Helper()
	err := testcluster.Eventually(within, func() error {
		v, err := metric(a, name)
		if err != nil {
			return err
		}
		if v != want {
			return fmt.Errorf("%s is %v, want %v", name, v, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A session's death releases its lease, even when etcd cannot take the
// revoke at that moment. Sessions are closed by the thousand at once
// (their clients' connections close), first with quorum, then while the
// cluster has none; every lease must be gone from etcd once it is back.
// (A revoke was tried once: those that failed left their leases, and the
// locks under them, alive for the TTL, here 24 h.)
func TestClosedSessionsReleaseTheirLeases(t *testing.T) {
	c := testcluster.New(t)
	agents := startStatic(t, c, 3)
	a := agents[0]
	cli := a.Client()
	baseline, err := metric(a, "beacon_sessions_open")
	if err != nil {
		t.Fatal(err)
	}
	closeAll := func(conns []*grpc.ClientConn) {
		var wg sync.WaitGroup
		for _, cc := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); cc.Close() }()
		}
		wg.Wait()
	}
	waitGone := func(what string, leases []clientv3.LeaseID) {
		t.Helper()
		var left int
		err := testcluster.Eventually(90*time.Second, func() error {
			var err error
			if left, err = leasesLeft(cli, leases); err != nil {
				return err
			}
			if left > 0 {
				return fmt.Errorf("%d of %d leases left", left, len(leases))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// With quorum: 3000 sessions on 3 connections, closed at once.
	conns := []*grpc.ClientConn{rawConn(t, a), rawConn(t, a), rawConn(t, a)}
	leases := openSessions(t, conns, 3000)
	closeAll(conns)
	waitGone("3000 sessions closed at once", leases)
	waitMetric(t, a, "beacon_sessions_open", baseline, 60*time.Second)

	// Without quorum: the other two members are paused while 1000
	// sessions close, until the agent has ended them all (each revoke
	// tried and failed), then resumed.
	conns = []*grpc.ClientConn{rawConn(t, a), rawConn(t, a)}
	leases = openSessions(t, conns, 1000)
	for _, p := range agents[1:] {
		if err := syscall.Kill(p.Pid(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		defer syscall.Kill(p.Pid(), syscall.SIGCONT)
	}
	closeAll(conns)
	waitMetric(t, a, "beacon_sessions_open", baseline, 60*time.Second)
	qctx, qcancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err = cli.Get(qctx, "quorum-check")
	qcancel()
	if err == nil {
		t.Fatal("a linearizable read succeeded with two of three members paused: the test proves nothing")
	}
	for _, p := range agents[1:] {
		if err := syscall.Kill(p.Pid(), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	waitGone("1000 sessions closed without quorum", leases)
}

// One connection may open max-sessions-per-connection (1024) sessions;
// the next is refused with ResourceExhausted naming the limit, and
// another connection still opens sessions.
func TestSessionsPerConnectionLimit(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cc := rawConn(t, a)
	openSessions(t, []*grpc.ClientConn{cc}, 1024)
	_, err := openSession(cc)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "max-sessions-per-connection 1024") {
		t.Fatalf("session 1025 on one connection: %v, want ResourceExhausted naming max-sessions-per-connection 1024", err)
	}
	if _, err := openSession(rawConn(t, a)); err != nil {
		t.Fatalf("a session on another connection: %v", err)
	}
}

// The limits are the agent's flags: with --max-sessions-per-connection 2
// and --max-sessions 4, the third session on one connection is refused
// naming the first, and sessions on other connections are refused naming
// the second once the agent holds 4 (its own included).
func TestSessionLimitsConfigured(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start("--max-sessions-per-connection", "2", "--max-sessions", "4")
	a.WaitReady(readyWithin)
	cc := rawConn(t, a)
	openSessions(t, []*grpc.ClientConn{cc}, 2)
	_, err := openSession(cc)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "max-sessions-per-connection 2") {
		t.Fatalf("session 3 on one connection: %v, want ResourceExhausted naming max-sessions-per-connection 2", err)
	}
	opened := 2
	for ; opened < 10; opened++ {
		if _, err = openSession(rawConn(t, a)); err != nil {
			break
		}
	}
	if st := status.Convert(err); opened > 4 || st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "max-sessions 4") {
		t.Fatalf("after %d sessions: %v, want ResourceExhausted naming max-sessions 4 by the 5th", opened, err)
	}
}

// An instance with 100k tags, or too much meta, is refused with
// InvalidArgument naming the field and the limit (100k tags were taken).
func TestInstanceLimitsRefused(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	rc := beaconpb.NewRegistryClient(rawConn(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tags := make([]string, 100000)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%d", i)
	}
	meta := map[string]string{}
	for i := range 65 {
		meta[fmt.Sprintf("k%d", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		in   *beaconpb.Instance
		want string
	}{
		{"100k tags", &beaconpb.Instance{Service: "web", Port: 80, Tags: tags}, "tags: 100000 tags is over the limit of 64"},
		{"65 meta keys", &beaconpb.Instance{Service: "web", Port: 80, Meta: meta}, "meta: 65 keys is over the limit of 64"},
		{"80 KiB of meta", &beaconpb.Instance{Service: "web", Port: 80, Meta: map[string]string{"blob": strings.Repeat("x", 80<<10)}}, "meta: 81924 bytes is over the limit of 65536"},
	} {
		_, err := rc.Register(ctx, &beaconpb.RegisterRequest{Instance: tc.in})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument with %q", tc.name, err, tc.want)
		}
	}
}

// A Registry.Watch stream whose client never reads: flooded with changes,
// the agent cuts it off once more than 4096 wait, drops what it had
// queued while the client still does not read, and the stream ends with
// ResourceExhausted naming the limit. (Such streams held the agent's
// memory: 500 of them took it from 738 MB to 2.42 GB.)
func TestSlowRegistryWatchCutOff(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cli := a.Client()
	// The smallest windows gRPC allows, so the agent's sends block early.
	cc := rawConn(t, a, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stream, err := beaconpb.NewRegistryClient(cc).Watch(ctx, &beaconpb.WatchRequest{Service: "flood"})
	if err != nil {
		t.Fatal(err)
	}
	waitMetric(t, a, "beacon_registry_watchers", 1, 30*time.Second)
	start := time.Now()

	// Instances written straight to etcd, 128 to a transaction, far past
	// what the window and the buffer hold together.
	for i := 0; i < 80; i++ {
		var ops []clientv3.Op
		for j := 0; j < 128; j++ {
			id := fmt.Sprintf("i%d-%d", i, j)
			b, _ := json.Marshal(map[string]any{"id": id, "service": "flood", "node": "a", "address": "127.0.0.1",
				"port": 80, "weight": 1, "status": "passing"})
			ops = append(ops, clientv3.OpPut("/beacon/services/flood/"+id, string(b)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d instances written in %s", 80*128, time.Since(start).Round(time.Millisecond))
	// Cut off while the client still reads nothing: no watcher, nothing
	// queued.
	waitMetric(t, a, "beacon_registry_watchers", 0, 60*time.Second)
	waitMetric(t, a, "beacon_registry_watch_buffered_events", 0, 10*time.Second)
	t.Logf("cut off %s after the flood began", time.Since(start).Round(time.Millisecond))

	// Now read: what was already on its way, then the end (not a fresh
	// snapshot: the agent starting over would hold as much again).
	events := 0
	for n := 0; ; n++ {
		msg, err := stream.Recv()
		if err == nil {
			if msg.Type != beaconpb.WatchResponse_SNAPSHOT {
				events++
			} else if events > 0 {
				t.Fatalf("after %d changes the agent sent a fresh snapshot, want the stream cut off with ResourceExhausted", events)
			}
			continue
		}
		t.Logf("the client read %d messages, then the end, %s after the flood began", n, time.Since(start).Round(time.Millisecond))
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "watch-buffer 4096") {
			t.Fatalf("the flooded watch ended with %v, want ResourceExhausted naming watch-buffer 4096", err)
		}
		return
	}
}
