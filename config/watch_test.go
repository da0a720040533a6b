package config

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/fanout"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// watchInto runs s.Watch in the background, sending its updates to the
// returned channel and its end to the error channel.
func watchInto(ctx context.Context, s *Store, prefix string, from int64) (chan Update, chan error) {
	updates, done := make(chan Update, 64), make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, prefix, from, func(u Update) error { updates <- u; return nil })
	}()
	return updates, done
}

// TestStoreWatchResume: watches resumed from a revision the shared watch
// already passed (history, on a watch of their own) and from one it has
// not reached (the shared watch alone) both get every change from there,
// once, in order, like a fresh watch.
func TestStoreWatchResume(t *testing.T) {
	cli := startEtcd(t)
	s := NewStore(cli, "/beacon/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	fresh, _ := watchInto(ctx, s, "app/", 0)
	if u := next(t, fresh); !u.Snapshot {
		t.Fatalf("first update: %+v", u)
	}
	r1, _ := s.Put(ctx, "app/a", []byte("1"))
	if u := next(t, fresh); u.Revision != r1 {
		t.Fatalf("fresh watch: %+v, want the put at %d", u, r1)
	}
	// r1 is behind the shared watch now; r1+1 is ahead of it.
	behind, _ := watchInto(ctx, s, "app/", r1)
	ahead, _ := watchInto(ctx, s, "app/", r1+1)
	if u := next(t, behind); u.Snapshot || u.Revision != r1 || u.Changes[0].Entry.Key != "app/a" {
		t.Fatalf("resumed at %d: %+v, want the put at %d", r1, u, r1)
	}
	// Whether each resumed watch subscribed before or after the next put
	// reached the shared watch, it gets that put once.
	r2, _ := s.Put(ctx, "app/b", []byte("2"))
	for name, ch := range map[string]chan Update{"fresh": fresh, "behind": behind, "ahead": ahead} {
		if u := next(t, ch); u.Snapshot || u.Revision != r2 || len(u.Changes) != 1 || u.Changes[0].Entry.Key != "app/b" {
			t.Fatalf("%s: %+v, want only the put at %d", name, u, r2)
		}
	}
}

// TestStoreWatchSlow: a watcher that stops reading is dropped once more
// than fanout.DefaultLimit changes wait for it, with ResourceExhausted
// and the revision to watch again from, and watching again from there
// loses nothing.
func TestStoreWatchSlow(t *testing.T) {
	cli := startEtcd(t)
	s := NewStore(cli, "/beacon/")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	snapped, stuck, release := make(chan struct{}), make(chan int64, 1), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, "bulk/", 0, func(u Update) error {
			if u.Snapshot {
				close(snapped)
			} else {
				select {
				case stuck <- u.Revision:
					<-release // the first change blocks the watcher
				default:
				}
			}
			return nil
		})
	}()
	select {
	case <-snapped:
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot")
	}
	// Transactions of 128 puts (etcd's default limit) until the watcher
	// has been dropped.
	var first int64
	for i := 0; ; i++ {
		var ops []clientv3.Op
		for j := 0; j < 128; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/beacon/config/bulk/%d/%d", i, j), "v"))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			select {
			case first = <-stuck:
			case <-time.After(10 * time.Second):
				t.Fatal("the watcher never got the first change")
			}
		}
		if i*128 > 2*fanout.DefaultLimit {
			break
		}
	}
	close(release)
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow watcher was not dropped")
	}
	st := status.Convert(rpcerr.From(err))
	want := fmt.Sprintf("from_revision %d", first+1)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), want) {
		t.Fatalf("slow watcher ended with %v, want ResourceExhausted naming %s", err, want)
	}
	// Watching again from there starts with the change after the first.
	again, _ := watchInto(ctx, s, "bulk/", first+1)
	if u := next(t, again); u.Snapshot || u.Revision != first+1 || len(u.Changes) != 128 {
		t.Fatalf("watching again: %+v, want the 128 changes at %d", u.Revision, first+1)
	}
}
