package acl

import (
	"testing"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
)

// TestScopedBarrierToken: barriers are the lock kind's, named
// barriers/<name>: lock:barriers/deploy:write enters the barrier deploy
// and no other; a lock rule for lock names (lock:batch-*:write) covers
// no barrier; waiting for the others to leave needs read.
func TestScopedBarrierToken(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	mgmt := a.bootstrap(t)
	enter := func(secret, name string) error {
		conn := a.dialTCP(t, secret)
		sid, err := openSession(t, conn)
		if err != nil {
			t.Fatal(err)
		}
		st, err := beaconpb.NewBarrierClient(conn).Enter(ctxT(t), &beaconpb.BarrierEnterRequest{Name: name, SessionId: sid, Count: 1})
		if err == nil {
			var ev *beaconpb.BarrierEnterEvent
			for ev, err = st.Recv(); err == nil && ev.State != beaconpb.BarrierState_BARRIER_STATE_TRIPPED; ev, err = st.Recv() {
			}
		}
		return err
	}
	deploy, _ := a.token(t, mgmt, "lock:barriers/deploy:write")
	if err := enter(deploy, "deploy"); err != nil {
		t.Fatalf("deploy with lock:barriers/deploy:write: %v", err)
	}
	wantCode(t, "other", enter(deploy, "other"), codes.PermissionDenied, "lock:barriers/other:write")
	batch, _ := a.token(t, mgmt, "lock:batch-*:write")
	wantCode(t, "batch-1", enter(batch, "batch-1"), codes.PermissionDenied, "lock:barriers/batch-1:write")
	w, err := beaconpb.NewBarrierClient(a.dialTCP(t, batch)).WaitLeft(ctxT(t), &beaconpb.BarrierWaitLeftRequest{Name: "deploy", Round: 1, Cutoff: 1})
	if err == nil {
		_, err = w.Recv()
	}
	wantCode(t, "wait left", err, codes.PermissionDenied, "lock:barriers/deploy:read")
}
