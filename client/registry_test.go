package client

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/lock"
	"github.com/beaconhq/beacon/queue"
	"github.com/beaconhq/beacon/registry"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// testAgent is the agent's side of sessions and registrations, served over
// gRPC on loopback and backed by a real etcd in the test's process.
type testAgent struct {
	addr      string
	cli       *clientv3.Client
	sessions  *session.Manager
	agentSess *session.Session
	opens     chan struct{}                 // a Session.Open stream arrived
	hold      atomic.Pointer[chan struct{}] // if set, Session.Open waits for it to close
}

func startTestAgent(t *testing.T) *testAgent {
	t.Helper()
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cat := registry.NewCatalog(cli, "/beacon/")
	go cat.Run(ctx)
	sessions := session.NewManager(cli)
	agentSess, err := sessions.Open(ctx, "agent", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	local, err := registry.NewLocal(ctx, registry.LocalConfig{Client: cli, Namespace: "/beacon/", Node: "n1", NodeAddr: "127.0.0.1",
		DataDir: t.TempDir(), Sessions: sessions, AgentSession: agentSess, Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)
	a := &testAgent{cli: cli, sessions: sessions, agentSess: agentSess, opens: make(chan struct{}, 100)}
	srv := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if info.FullMethod == beaconpb.Session_Open_FullMethodName {
			select {
			case a.opens <- struct{}{}:
			default:
			}
			if hold := a.hold.Load(); hold != nil {
				select {
				case <-*hold:
				case <-ss.Context().Done():
					return ss.Context().Err()
				}
			}
		}
		return handler(srv, ss)
	}))
	beaconpb.RegisterSessionServer(srv, session.NewService(sessions))
	beaconpb.RegisterRegistryServer(srv, registry.NewService(local, cat))
	beaconpb.RegisterLockServer(srv, lock.NewService(cli, sessions, "/beacon/", lock.WithNode("n1")))
	b := queue.New(cli, "/beacon/")
	t.Cleanup(func() { _ = b.Close() })
	beaconpb.RegisterQueueServer(srv, queue.NewService(b, sessions))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	a.addr = lis.Addr().String()
	return a
}

// leases lists the leases etcd holds, in hex.
func (a *testAgent) leases(ctx context.Context) ([]string, error) {
	resp, err := a.cli.Leases(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range resp.Leases {
		out = append(out, strconv.FormatInt(int64(l.ID), 16))
	}
	slices.Sort(out)
	return out, nil
}

func (c *Client) current() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// TestAutoSessionReplacedOnce: when the automatic session breaks, its
// keeper and a caller that needs it at the same moment replace it with one
// session between them, never two (one of which nobody would ever close),
// and the registrations it held move to that one.
func TestAutoSessionReplacedOnce(t *testing.T) {
	a := startTestAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := New(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Register(ctx, &beaconpb.Instance{Service: "web", Id: "w1", Port: 80}, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		old := c.current()
		old.cancel() // the stream breaks: the agent ends the session
		<-old.Done()
		s, err := c.autoSession(ctx) // while its keeper replaces it too
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if s == old {
			t.Fatalf("round %d: the broken session was handed out", i)
		}
	}

	// What settles: the agent's lease and the client's one session's,
	// which holds the registration.
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := c.current()
		leases, err := a.leases(ctx)
		want := []string{strconv.FormatInt(int64(a.agentSess.Lease()), 16), s.Lease}
		slices.Sort(want)
		var holder string
		if resp, gerr := a.cli.Get(ctx, registry.Key("/beacon/", "web", "w1")); gerr == nil && resp.Count == 1 {
			holder = strconv.FormatInt(resp.Kvs[0].Lease, 16)
		}
		switch {
		case err != nil:
			last = err.Error()
		case !slices.Equal(leases, want):
			last = fmt.Sprintf("leases in etcd %v, want the agent's and the client's session's %v", leases, want)
		case holder != s.Lease:
			last = fmt.Sprintf("web/w1 is under lease %q, not the session's %s", holder, s.Lease)
		default:
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCloseWhileTheSessionOpens: the client's lock is not held while the
// automatic session is being opened, so Close returns at once even when
// the agent takes its time to answer.
func TestCloseWhileTheSessionOpens(t *testing.T) {
	a := startTestAgent(t)
	c, err := New(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	defer close(hold)
	a.hold.Store(&hold) // the agent does not answer opens for now
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	registered := make(chan error, 1)
	go func() {
		_, err := c.Register(ctx, &beaconpb.Instance{Service: "web", Id: "w1", Port: 80}, nil)
		registered <- err
	}()
	select {
	case <-a.opens:
	case <-time.After(30 * time.Second):
		t.Fatal("the client never asked for a session")
	}
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the session being opened")
	}
	select {
	case err := <-registered:
		if err == nil {
			t.Fatal("Register succeeded on a closed client")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Register did not return after Close")
	}
}
