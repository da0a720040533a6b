package acl

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/acl/bearer"
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/barrier"
	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/lock"
	"github.com/beaconhq/beacon/registry"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// One real etcd member serves the package's tests (each under a
// namespace of its own); TestEtcdAuth* start their own, since they turn
// auth on.
var (
	sharedOnce sync.Once
	sharedURL  string
	sharedErr  error
	sharedEtcd *embed.Etcd
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEtcd != nil {
		sharedEtcd.Close()
	}
	if sharedURL != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

var sharedDir string

func testEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "acl-etcd-")
		if sharedErr == nil {
			sharedEtcd, sharedURL, sharedErr = etcdtest.Start(sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return etcdtest.Client(t, sharedURL)
}

func testNamespace(t *testing.T) string {
	return "/acl-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()) + "/"
}

// agent is a real gRPC API as the agent serves it: the gate's
// interceptors, and the real Session, Lock, Registry and ACL services on
// a TCP port and an owner-only unix socket.
type agent struct {
	ns     string
	cli    *clientv3.Client
	cache  *Cache
	store  *Store
	tcp    string
	socket string
}

func startAgent(t *testing.T, cli *clientv3.Client, enabled bool) *agent {
	t.Helper()
	return startAgentIn(t, cli, enabled, testNamespace(t))
}

// startAgentIn serves the namespace ns.
func startAgentIn(t *testing.T, cli *clientv3.Client, enabled bool, ns string) *agent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := &agent{ns: ns, cli: cli}
	gate := NewGate(enabled, a.ns)
	srv := grpc.NewServer(grpc.Creds(ConnCredentials()), grpc.ChainUnaryInterceptor(gate.Unary), grpc.ChainStreamInterceptor(gate.Stream))

	sessions := session.NewManager(cli)
	t.Cleanup(func() { sessions.CloseAll(time.Second) })
	agentSess, err := sessions.Open(ctx, "agent:n1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	catalog := registry.NewCatalog(cli, a.ns)
	bg, stopBG := context.WithCancel(context.Background())
	t.Cleanup(stopBG)
	go catalog.Run(bg)
	local, err := registry.NewLocal(ctx, registry.LocalConfig{Client: cli, Namespace: a.ns, Node: "n1", NodeAddr: "127.0.0.1",
		DataDir: t.TempDir(), Sessions: sessions, AgentSession: agentSess, Catalog: catalog})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(local.Close)

	a.store = NewStore(cli, a.ns)
	rt, err := Start(ctx, gate, srv, cli, a.ns) // as the agent wires it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	a.cache = rt.cache
	beaconpb.RegisterSessionServer(srv, session.NewService(sessions))
	beaconpb.RegisterLockServer(srv, lock.NewService(cli, sessions, a.ns, lock.WithNode("n1")))
	beaconpb.RegisterRegistryServer(srv, registry.NewService(local, catalog))
	beaconpb.RegisterBarrierServer(srv, barrier.NewService(cli, sessions, a.ns, barrier.WithNode("n1")))

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "acl-sock-") // short: a socket path has ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	a.socket = filepath.Join(dir, "beacon.sock")
	ul, err := net.Listen("unix", a.socket)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(a.socket, 0o600)
	go func() { _ = srv.Serve(tl) }()
	go func() { _ = srv.Serve(ul) }()
	t.Cleanup(func() { srv.Stop(); os.RemoveAll(dir) })
	a.tcp = tl.Addr().String()
	return a
}

// dialTCP is a client of the TCP API sending secret ("" : none).
func (a *agent) dialTCP(t *testing.T, secret string) *grpc.ClientConn {
	return dial(t, a.tcp, secret)
}

// dialSocket is a client on the unix socket, with no token.
func (a *agent) dialSocket(t *testing.T) *grpc.ClientConn {
	return dial(t, "unix:"+a.socket, "")
}

func dial(t *testing.T, target, secret string) *grpc.ClientConn {
	t.Helper()
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, bearer.Token(secret).DialOptions()...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// bootstrap makes the management token through the socket.
func (a *agent) bootstrap(t *testing.T) string {
	t.Helper()
	resp, err := beaconpb.NewACLClient(a.dialSocket(t)).Bootstrap(ctxT(t), &beaconpb.ACLBootstrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Secret
}

// token makes a token with rules through the TCP API with the management
// token.
func (a *agent) token(t *testing.T, mgmt string, rules ...string) (secret, accessor string) {
	t.Helper()
	resp, err := beaconpb.NewACLClient(a.dialTCP(t, mgmt)).TokenCreate(ctxT(t), &beaconpb.ACLTokenCreateRequest{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Secret, resp.Token.AccessorId
}

// openSession opens an application session over conn.
func openSession(t *testing.T, conn *grpc.ClientConn) (string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := beaconpb.NewSessionClient(conn).Open(ctx)
	if err != nil {
		return "", err
	}
	// A stream the server ended (a refused token) may fail Send with
	// io.EOF; its status is what Recv answers.
	if err := st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &beaconpb.OpenSession{Ttl: durationpb.New(10 * time.Second), Name: "t"}}}); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	ev, err := st.Recv()
	if err != nil {
		return "", err
	}
	return ev.GetOpened().GetSessionId(), nil
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, what string, err error, code codes.Code, mention string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), mention) {
		t.Errorf("%s: %v %q; want %v mentioning %q", what, st.Code(), st.Message(), code, mention)
	}
}
