package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestMembershipLockLostMidChange: a membership change whose lock's lease
// ends half-way (revoked here; a stalled holder's expires) takes no
// further step, although another host now holds the lock and runs its own
// change; and its context ends.
func TestMembershipLockLostMidChange(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	secondIn := make(chan struct{})
	secondDone := make(chan error, 1)
	var stepsAfterLoss int
	outer := ctx
	err := WithFencedMembershipLock(ctx, cli, "/beacon/", func(ctx context.Context) error {
		// Step one goes.
		if err := FenceMembershipChange(ctx); err != nil {
			t.Fatalf("first step under a held lock: %v", err)
		}
		// Another host waits for the lock.
		go func() {
			secondDone <- WithFencedMembershipLock(outer, cli, "/beacon/", func(context.Context) error {
				close(secondIn)
				return nil
			})
		}()
		// The lock's lease ends.
		resp, err := cli.Get(ctx, MembershipLockKey("/beacon/"), clientv3.WithFirstCreate()...)
		if err != nil || resp.Count == 0 {
			t.Fatalf("the lock's key: %v, %d keys", err, resp.Count)
		}
		if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-secondIn:
		case <-time.After(30 * time.Second):
			t.Fatal("the other host never got the lock")
		}
		// The other host's change runs now: this one's next step must not.
		if err := FenceMembershipChange(ctx); err == nil {
			stepsAfterLoss++
		} else if !errors.Is(err, ErrMembershipLockLost) {
			t.Errorf("the fence after the loss: %v, want ErrMembershipLockLost", err)
		}
		// And fn's context ends with the session, its cause named.
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
			t.Error("the context of a change whose lock was lost never ended")
			return ErrMembershipLockLost
		}
		if !errors.Is(context.Cause(ctx), ErrMembershipLockLost) {
			t.Errorf("the context ended with %v, want ErrMembershipLockLost", context.Cause(ctx))
		}
		if err := FenceMembershipChange(ctx); err == nil {
			stepsAfterLoss++
		}
		return ctx.Err()
	})
	if stepsAfterLoss > 0 {
		t.Errorf("%d steps passed the fence after the lock was lost", stepsAfterLoss)
	}
	if !errors.Is(err, ErrMembershipLockLost) {
		t.Errorf("WithFencedMembershipLock: %v, want ErrMembershipLockLost", err)
	}
	if err := <-secondDone; err != nil {
		t.Errorf("the other host's change: %v", err)
	}
}

// TestFenceOutsideTheLock: a context that is not a membership change's is
// not fenced, and a held lock lets every step through.
func TestFenceOutsideTheLock(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := FenceMembershipChange(ctx); err != nil {
		t.Fatalf("unfenced context: %v", err)
	}
	err := WithFencedMembershipLock(ctx, cli, "/beacon/", func(ctx context.Context) error {
		for range 3 {
			if err := FenceMembershipChange(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
