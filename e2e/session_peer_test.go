package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/procid"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// socketConn is a plain gRPC connection to the agent's unix socket.
func socketConn(t *testing.T, a *testcluster.Agent) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("unix:"+filepath.Join(a.DataDir, "beacon.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// openSessionOn opens a session on conn naming proc, and answers the
// agent's first answer (the open, or its refusal).
func openSessionOn(t *testing.T, conn *grpc.ClientConn, proc *beaconpb.ClientProcess) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := beaconpb.NewSessionClient(conn).Open(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{
		Open: &beaconpb.OpenSession{Ttl: durationpb.New(time.Hour), Name: "claim", Process: proc}}}); err != nil {
		return err
	}
	_, err = st.Recv()
	return err
}

// startOrphan starts a process that is not this one's descendant (its
// parent exits at once and it is handed to init): another live process
// of the host, as a daemon would be.
func startOrphan(t *testing.T) *beaconpb.ClientProcess {
	t.Helper()
	out, err := exec.Command("sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	p := procid.Of(pid)
	if p == nil {
		t.Fatalf("the orphan (pid %d) does not run", pid)
	}
	return p
}

// Over the unix socket the agent knows which process connected
// (SO_PEERCRED): a session may name that process or one of its
// descendants, not another live process of the host, whose life would
// keep the session's leases for their TTL after the client is gone
// (review find: such a claim was taken on trust). Over TCP nothing tells
// who connected: the claim is still taken on trust (docs/security.md).
func TestSessionClaimOverSocketIsThePeers(t *testing.T) {
	a, _ := lockOneAgent(t)
	sock := socketConn(t, a)
	orphan := startOrphan(t)

	err := openSessionOn(t, sock, orphan)
	st := status.Convert(err)
	if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "pid "+strconv.FormatInt(orphan.Pid, 10)) ||
		!strings.Contains(st.Message(), "process that connected") {
		t.Fatalf("over the socket, a session naming another live process (pid %d): %v; want PermissionDenied naming it", orphan.Pid, err)
	}

	// Its own process, and a child of it, it may name.
	if err := openSessionOn(t, sock, procid.Self()); err != nil {
		t.Fatalf("over the socket, a session naming its own process: %v", err)
	}
	child := exec.Command("sleep", "300")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	if err := openSessionOn(t, sock, procid.Of(child.Process.Pid)); err != nil {
		t.Fatalf("over the socket, a session naming a child of its process: %v", err)
	}

	// Over TCP the claim cannot be checked.
	if err := openSessionOn(t, rawConn(t, a), orphan); err != nil {
		t.Fatalf("over TCP, a session naming a local process: %v; want it taken on trust", err)
	}
}
