package e2e

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/procid"
	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// openRawSession opens a session on a connection of its own with open,
// and returns its id and a func that drops the connection (no close).
func openRawSession(t *testing.T, a *testcluster.Agent, open *beaconpb.OpenSession) (string, func(), error) {
	t.Helper()
	conn := rawConn(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := beaconpb.NewSessionClient(conn).Open(ctx)
	if err == nil {
		err = st.Send(&beaconpb.SessionRequest{Kind: &beaconpb.SessionRequest_Open{Open: open}})
	}
	var ev *beaconpb.SessionEvent
	if err == nil {
		ev, err = st.Recv()
	}
	drop := func() { cancel(); conn.Close() }
	if err != nil {
		drop()
		return "", nil, err
	}
	return ev.GetOpened().GetSessionId(), drop, nil
}

// A session's name is shown to other clients (a lock's holders): one
// too long, or with control characters that would reach their
// terminals, is refused (review find: 3 MiB names were taken, then a
// TryAcquire answered Internal; escape sequences reached another
// operator's terminal).
func TestSessionNameChecked(t *testing.T) {
	a, _ := lockOneAgent(t)
	for _, name := range []string{strings.Repeat("n", 513), "x\x1b[2J\x1b]0;pwned\a"} {
		_, _, err := openRawSession(t, a, &beaconpb.OpenSession{Ttl: durationpb.New(10 * time.Second), Name: name})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "name") {
			t.Errorf("open with name %q: %v; want InvalidArgument naming the name", name, err)
		}
	}
	if _, drop, err := openRawSession(t, a, &beaconpb.OpenSession{Ttl: durationpb.New(10 * time.Second), Name: "batch job #4 (nightly)"}); err != nil {
		t.Errorf("a plain name: %v", err)
	} else {
		drop()
	}
}

// A session that names a process the agent cannot see on its host (another
// boot id, or a pid that does not run) has its lease revoked at once when
// its connection drops, as an unnamed one: the agent leaves a lease to its
// TTL only for a holder it sees alive (review find: 200 dropped sessions
// naming "another host" kept their locks for their 24 h TTLs).
func TestSessionClaimingAnotherProcessIsRevoked(t *testing.T) {
	a, cli := lockOneAgent(t)
	self := procid.Self()
	claims := map[string]*beaconpb.ClientProcess{
		"another boot id":   {BootId: "not-this-host", Pid: self.Pid, StartTime: self.StartTime},
		"a pid not running": {BootId: self.BootId, Pid: 1 << 22, StartTime: 1},
	}
	lk := beaconpb.NewLockClient(rawConn(t, a))
	for what, proc := range claims {
		name := "claim-" + strconv.Itoa(len(what))
		id, drop, err := openRawSession(t, a, &beaconpb.OpenSession{Ttl: durationpb.New(time.Hour), Name: what, Process: proc})
		if err != nil {
			t.Fatalf("%s: open: %v", what, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = lk.Acquire(ctx, &beaconpb.LockAcquireRequest{Name: name, SessionId: id})
		cancel()
		if err != nil {
			t.Fatalf("%s: acquire: %v", what, err)
		}
		drop()
		err = testcluster.Eventually(15*time.Second, func() error {
			resp, err := cli.Get(context.Background(), "/beacon/locks/"+name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			if resp.Count != 0 {
				return os.ErrExist
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: the dropped session's lock is still held (its 1 h lease left to its TTL): %v", what, err)
		}
	}
}
