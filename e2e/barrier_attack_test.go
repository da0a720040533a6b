package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The SDK refuses a barrier count beyond what the API carries (int32),
// naming it, rather than sending it cut to its low 32 bits: before, a
// careless caller's count of 2^32+1 entered a barrier of 1, which tripped
// at once, and 2^31 reached the agent as a negative count.
func TestBarrierSDKCountOutOfRange(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("n1")
	a.Start()
	a.WaitReady(readyWithin)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sess, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1<<32 + 1, 1 << 31, -(1 << 32) + 1, 0} {
		e, err := cl.Barrier(sess, "huge", n, client.BarrierTimeout(2*time.Second)).Enter(ctx)
		if err == nil {
			t.Fatalf("count %d: entered round %d with %d member(s)", n, e.Round, len(e.Members))
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("count %d: %v, want InvalidArgument", n, err)
		}
		t.Logf("count %d: %v", n, err)
	}
}
