package e2e

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Issue 9: every queue name a client asked about started a watch-fed view
// (an etcd watcher and two goroutines) that lived a minute after its last
// use; 20,000 names in 5 s made 40,000 goroutines. Now an agent follows at
// most max-queue-views queues, set low here through the config file, and
// its goroutines stay bounded however many names are asked about.
func TestQueueViewsBounded(t *testing.T) {
	const limit, names, workers = 16, 3000, 8
	c := testcluster.New(t)
	a := c.Host("n1")
	cfg, write := configFile(t)
	write(fmt.Sprintf("max-queue-views: %d\n", limit))
	a.Start("--config", cfg)
	a.WaitReady(readyWithin)
	qc := beaconpb.NewQueueClient(rawConn(t, a))

	// A first call of each kind, so that the baseline holds the agent's
	// connection and its etcd watch stream.
	if _, err := qc.Reserve(queueCtx(t), &beaconpb.QueueReserveRequest{Queue: "warm", Wait: durationpb.New(time.Millisecond)}); status.Code(err) != codes.NotFound {
		t.Fatalf("first reserve: %v", err)
	}
	baseline, err := metric(a, "go_goroutines")
	if err != nil {
		t.Fatal(err)
	}

	var next, most atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	deadline := time.Now().Add(3 * time.Minute)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := next.Add(1)
				if i > names {
					return
				}
				q := fmt.Sprintf("views-%d", i)
				// A wait needs the queue's view; Stats and a Reserve
				// that does not wait are plain reads.
				_, err := qc.Reserve(queueCtx(t), &beaconpb.QueueReserveRequest{Queue: q, Wait: durationpb.New(time.Millisecond)})
				if status.Code(err) != codes.NotFound {
					errs <- fmt.Errorf("reserve from %s: %v, want NotFound", q, err)
					return
				}
				if _, err := qc.Stats(queueCtx(t), &beaconpb.QueueStatsRequest{Queue: q}); err != nil {
					errs <- fmt.Errorf("stats of %s: %v", q, err)
					return
				}
				if w == 0 && i%250 == 0 {
					n, err := metric(a, "go_goroutines")
					if err != nil {
						errs <- err
						return
					}
					for m := most.Load(); int64(n) > m && !most.CompareAndSwap(m, int64(n)); m = most.Load() {
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := next.Load(); n <= names {
		t.Fatalf("only %d of %d names asked about in 3 minutes", n-1, names)
	}
	// Unbounded, the samples were thousands over the baseline (two
	// goroutines a name, for a minute); bounded, the agent's views, the
	// calls in flight and evicted views on their way out.
	if m := float64(most.Load()); m > baseline+600 {
		t.Fatalf("go_goroutines reached %v while %d names were asked about (baseline %v, max-queue-views %d)", m, names, baseline, limit)
	}
	var final float64
	err = testcluster.Eventually(30*time.Second, func() error {
		n, err := metric(a, "go_goroutines")
		final = n
		if err != nil {
			return err
		}
		if n > baseline+200 {
			return fmt.Errorf("go_goroutines %v after %d queue names, baseline %v (max-queue-views %d)", n, names, baseline, limit)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("go_goroutines: baseline %v, at most %v while %d names were asked about, %v after", baseline, most.Load(), names, final)
	if log := a.Log(); strings.Contains(log, "panic") {
		t.Fatalf("agent log has a panic:\n%s", log)
	}
}
