package election_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/election"
	"github.com/beaconhq/beacon/internal/fanout"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Many observers of one election, coming and going, each see every
// change from where they start, in order.
func TestObserversShareOneWatch(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "shared")

	// Observers opened and closed in a burst before anything happens.
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			octx, cancel := context.WithCancel(ctx)
			defer cancel()
			_ = e.Observe(octx, func(election.Observation) error { return errors.New("seen the start") })
		}()
	}
	wg.Wait()

	const n = 20
	var mu sync.Mutex
	seen := make([][]string, n)
	octx, stop := context.WithCancel(ctx)
	defer stop()
	started := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		go func() {
			_ = e.Observe(octx, func(o election.Observation) error {
				mu.Lock()
				defer mu.Unlock()
				p := "none"
				if o.Leader != nil {
					p = o.Leader.Proposal
				}
				if len(seen[i]) == 0 {
					started <- struct{}{}
				}
				seen[i] = append(seen[i], p)
				return nil
			})
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d observers started", i, n)
		}
	}
	a := grant(t, cli, 60)
	la, err := e.Campaign(ctx, a, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Proclaim(ctx, la, "a2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, a); err != nil {
		t.Fatal(err)
	}
	want := "none,a1,a2,none"
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < n; i++ {
		for {
			mu.Lock()
			got := strings.Join(seen[i], ",")
			mu.Unlock()
			if got == want {
				break
			}
			if len(got) >= len(want) || time.Now().After(deadline) {
				t.Fatalf("observer %d saw %q, want %q", i, got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// An observer that stops reading is dropped with ErrSlowObserver
// (ResourceExhausted) once more than fanout.DefaultLimit changes wait.
func TestSlowObserverDropped(t *testing.T) {
	cli := startEtcd(t)
	ctx := ctxT(t)
	e, _ := election.New(cli, "/beacon/", "slow")
	started, stuck, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		calls := 0
		done <- e.Observe(ctx, func(election.Observation) error {
			calls++
			switch calls {
			case 1:
				close(started)
			case 2:
				close(stuck)
				<-release
			}
			return nil
		})
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("observer did not start")
	}
	// Candidates 128 at a time (etcd's default transaction limit): the
	// first transaction gives the election a leader, which blocks the
	// observer; the rest queue up for it.
	for i := 0; i*128 <= 2*fanout.DefaultLimit; i++ {
		var ops []clientv3.Op
		for j := 0; j < 128; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%d-%d", e.Prefix(), i, j), "p"))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			select {
			case <-stuck:
			case <-time.After(10 * time.Second):
				t.Fatal("the observer never got the first change")
			}
		}
	}
	close(release)
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow observer was not dropped")
	}
	if !errors.Is(err, election.ErrSlowObserver) || status.Convert(rpcerr.From(err)).Code() != codes.ResourceExhausted {
		t.Fatalf("slow observer ended with %v, want ErrSlowObserver (ResourceExhausted)", err)
	}
}
