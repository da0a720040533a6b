// Package apifuzz fuzzes the agent API's request validation: bytes are
// unmarshalled into each unary request of api/beaconpb and sent through a
// real gRPC client to one real agent, run in the test's process on its
// own loopback address with its embedded etcd. Every call must end in a
// code that names what was wrong with the request (never Internal,
// Unknown: a panic or an unclassified error), within a short deadline,
// and the agent must still answer a health check afterwards.
package apifuzz

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/beaconhq/beacon/agent"
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Agent is a beacon agent running in this process, a client connection
// to its API, and a session opened on it.
type Agent struct {
	Addr      string
	Conn      *grpc.ClientConn
	SessionID string

	dir     string
	cancel  context.CancelFunc
	stopped chan error
	session beaconpb.Session_OpenClient
}

// StartAgent starts a one-member agent on a random 127.x.y.z with the
// default ports, its data in a temporary directory, and waits (at most
// 90 s) until its API serves and a session is open.
func StartAgent() (*Agent, error) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[2]%250)
	dir, err := os.MkdirTemp("", "apifuzz-") // short: the API's unix socket lives in it
	if err != nil {
		return nil, err
	}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	agent.BindFlags(fs)
	if err := fs.Parse([]string{
		"--name", "fuzz", "--data-dir", dir,
		"--client-url", "http://" + ip + ":2379", "--peer-url", "http://" + ip + ":2380",
		"--api-addr", ip + ":7600", "--http-addr", ip + ":7601", "--dns-addr", ip + ":8600",
		"--log-level", "error",
	}); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg, err := agent.LoadConfig(fs)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{Addr: ip + ":7600", dir: dir, cancel: cancel, stopped: make(chan error, 1)}
	go func() { a.stopped <- agent.Run(ctx, cfg, zap.NewNop(), nil) }()

	if a.Conn, err = grpc.NewClient(a.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		a.Stop()
		return nil, err
	}
	if err := a.waitServing(90 * time.Second); err != nil {
		a.Stop()
		return nil, err
	}
	if err := a.openSession(); err != nil {
		a.Stop()
		return nil, err
	}
	return a, nil
}

// waitServing polls the health service until it says SERVING.
func (a *Agent) waitServing(bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		err := a.Healthy(2 * time.Second)
		if err == nil {
			return nil
		}
		select {
		case runErr := <-a.stopped:
			return fmt.Errorf("agent stopped while starting: %v", runErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent on %s not serving after %v: %v", a.Addr, bound, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Healthy asks the health service, within d.
func (a *Agent) Healthy(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r, err := healthpb.NewHealthClient(a.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if r.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %v", r.Status)
	}
	return nil
}

// openSession opens the session that fuzzed requests naming "@" as their
// session_id act in, kept open until Stop.
func (a *Agent) openSession() error {
	st, err := beaconpb.NewSessionClient(a.Conn).Open(context.Background())
	if err != nil {
		return err
	}
	if err := st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: &beaconpb.OpenSession{Ttl: durationpb.New(30 * time.Second), Name: "apifuzz"}}}); err != nil {
		return err
	}
	ev, err := st.Recv()
	if err != nil {
		return err
	}
	opened := ev.GetOpened()
	if opened == nil {
		return errors.New("session: no SessionOpened")
	}
	a.session, a.SessionID = st, opened.SessionId
	return nil
}

// Stop stops the agent (at most 30 s) and removes its data.
func (a *Agent) Stop() {
	if a.session != nil {
		_ = a.session.CloseSend()
	}
	a.cancel()
	select {
	case <-a.stopped:
	case <-time.After(30 * time.Second):
	}
	if a.Conn != nil {
		a.Conn.Close()
	}
	os.RemoveAll(a.dir)
}
