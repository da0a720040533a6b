package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A watcher whose send blocks for good (a gRPC stream nobody reads) is cut
// off with ResourceExhausted naming the limit once more than
// subscriptionBuffer changes wait for it, at once (its send still blocked),
// and what it had queued is dropped.
func TestSlowWatcherCutOff(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cat := NewCatalog(cli, "/beacon/")
	go cat.Run(ctx)
	<-cat.Ready()

	_, _, sub := cat.Subscribe(func(*Instance) bool { return true })
	blocked, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	done := make(chan error, 1)
	go func() {
		done <- sub.Forward(ctx, func(Event) error {
			select {
			case blocked <- struct{}{}:
			default:
			}
			<-release // the reader never reads
			return errors.New("stream ended")
		})
	}()
	// Transactions of 128 puts (etcd's default limit) until the watcher
	// is cut off.
	for i := 0; ; i++ {
		var ops []clientv3.Op
		for j := 0; j < 128; j++ {
			b, _ := json.Marshal(&Instance{ID: fmt.Sprintf("i%d-%d", i, j), Service: "web", Node: "n1", Address: "127.0.0.1", Port: 80})
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/beacon/services/web/i%d-%d", i, j), string(b)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
		if i*128 > 3*subscriptionBuffer {
			break
		}
	}
	// Usually the first change reaches send, which blocks; on a loaded
	// machine the flood can fill the buffer before Forward takes the
	// first change, and the cut comes first. Either way it must come.
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		select {
		case <-blocked:
			t.Fatal("the watcher whose send is blocked was not cut off")
		default:
			t.Fatal("the watcher was neither sent to nor cut off")
		}
	}
	want := fmt.Sprintf("watch-buffer %d", subscriptionBuffer)
	if st := status.Convert(rpcerr.From(err)); !errors.Is(err, ErrWatchBehind) || st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), want) {
		t.Fatalf("cut off with %v, want ErrWatchBehind (ResourceExhausted, %q)", err, want)
	}
	cat.mu.Lock()
	_, live := cat.subs[sub]
	queued, seen := len(sub.ch), len(sub.seen)
	cat.mu.Unlock()
	if live || queued != 0 || seen != 0 {
		t.Fatalf("after the cut: subscribed %v, %d changes still queued, %d instances remembered; want none", live, queued, seen)
	}
	if n, q := watchers.counts(); n != 0 || q != 0 {
		t.Fatalf("the watcher set still counts %d watchers, %d queued", n, q)
	}
}
