package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// A client that hangs up on a stream is no error of the agent's: the
// handlers' bare context errors are answered Canceled, which the API logs
// at debug, not as ERROR with code Unknown (which a client could repeat
// to flood the log).
func TestClientHangupIsNotAnError(t *testing.T) {
	a, _ := lockOneAgent(t)
	reg := beaconpb.NewRegistryClient(rawConn(t, a))
	sess := beaconpb.NewSessionClient(rawConn(t, a))
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		w, err := reg.Watch(ctx, &beaconpb.WatchRequest{Service: "web"})
		if err == nil {
			_, err = w.Recv() // the snapshot: the handler is in its forward loop
		}
		if err != nil {
			cancel()
			t.Fatalf("watch %d: %v", i, err)
		}
		// A session stream opened and dropped before its first message.
		sctx, scancel := context.WithCancel(context.Background())
		if _, err := sess.Open(sctx); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		scancel()
		cancel()
	}
	// The handlers' ends are counted by code once they return: all 20
	// watches Canceled (Unknown before), and only then is the log judged.
	waitMetric(t, a, `beacon_grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="beacon.v1.Registry",grpc_type="server_stream"}`, 20, 30*time.Second)
	for _, l := range strings.Split(a.Log(), "\n") {
		if strings.Contains(l, "finished call") && (strings.Contains(l, "ERROR") || strings.Contains(l, `"Unknown"`)) {
			t.Fatalf("a client's hang-up logged as an error: %s", l)
		}
	}
}
