package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Stats' in-flight listing reads the reports of the messages it lists,
// not every report of the queue: 2,000 reservations each with a report
// of 1,024 control characters (about 6 KiB of JSON each, 12 MB in all)
// are listed by a client that takes answers of at most 8 MiB. Before, the
// read took every report at once and the client refused the answer
// (ResourceExhausted: larger than max), and an agent read them all on
// every call, whatever it listed.
func TestInFlightReadsOnlyWhatItLists(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), MaxCallRecvMsgSize: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	b := New(cli, "/beacon/", WithNode("n1"))
	t.Cleanup(func() { b.Close() })
	filler := newBroker(t, "n2")
	q := queueName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 2000
	report := strings.Repeat("\x01", MaxProgressMessage)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, _, err := filler.Enqueue(ctx, q, []byte("x")); err != nil {
				errs <- err
				return
			}
			d, err := filler.Reserve(ctx, q, WithVisibility(time.Hour), WithWait(time.Minute))
			if err == nil {
				err = filler.Progress(ctx, d.Receipt, 50, report)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st, err := b.Stats(ctx, q, WithInFlight())
	if err != nil {
		t.Fatalf("stats with the in-flight listing: %v", err)
	}
	if len(st.InFlightMessages) != MaxInFlightListed || !st.InFlightMore || st.InFlight != n {
		t.Fatalf("listed %d (more %v) of %d in flight", len(st.InFlightMessages), st.InFlightMore, st.InFlight)
	}
	for _, f := range st.InFlightMessages {
		if f.Progress == nil || f.Progress.Message != report {
			t.Fatalf("message %s listed without its report: %+v", f.ID, f)
		}
	}
}
