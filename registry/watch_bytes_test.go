package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A watcher that never reads while instances with large meta change is
// cut off once the bytes of changes it left unread pass the catalog's
// WatchBufferBytes, far below the count bound, naming
// max-watch-buffer-bytes; what it had queued is dropped, and a watcher
// that reads keeps its subscription.
func TestSlowWatcherBytes(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cat := NewCatalog(cli, "/beacon/")
	cat.SetWatchBufferBytes(256 << 10)
	go cat.Run(ctx)
	<-cat.Ready()

	_, _, slow := cat.Subscribe(func(*Instance) bool { return true })
	_, _, fast := cat.Subscribe(func(*Instance) bool { return true })
	defer cat.Unsubscribe(fast)
	release := make(chan struct{})
	defer close(release)
	done := make(chan error, 1)
	go func() {
		done <- slow.Forward(ctx, func(Event) error {
			<-release // the reader never reads
			return errors.New("stream ended")
		})
	}()
	var got atomic.Int64
	go func() {
		_ = fast.Forward(ctx, func(Event) error {
			got.Add(1)
			return nil
		})
	}()

	// 800 KiB of meta in 100 changes, in batches of 10 (80 KiB, under the
	// bound): each batch waits for the reading watcher to have read the
	// last, so that it keeps within the bound however loaded the machine
	// (it is the one that reads), while the other falls 800 KiB behind.
	blob := strings.Repeat("m", 8<<10)
	for i := 0; i < 100; i++ {
		if i%10 == 0 {
			for end := time.Now().Add(20 * time.Second); got.Load() < int64(i); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(end) || fast.lagged() {
					t.Fatalf("the watcher that reads has %d of %d changes (cut off: %v)", got.Load(), i, fast.lagged())
				}
			}
		}
		b, _ := json.Marshal(&Instance{ID: fmt.Sprintf("i%d", i), Service: "web", Node: "n1", Address: "127.0.0.1", Port: 80,
			Meta: map[string]string{"blob": blob}})
		if _, err := cli.Put(ctx, fmt.Sprintf("/beacon/services/web/i%d", i), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the watcher that never reads was not cut off by bytes")
	}
	want := "max-watch-buffer-bytes 262144"
	if st := status.Convert(rpcerr.From(err)); !errors.Is(err, ErrWatchBehind) || st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), want) {
		t.Fatalf("cut off with %v, want ErrWatchBehind (ResourceExhausted, %q)", err, want)
	}
	// Under the catalog's lock: the cut drains the queue while holding it,
	// and Forward can see the cut before the drain is done.
	cat.mu.Lock()
	queued, n := len(slow.ch), slow.bytes.Load()
	cat.mu.Unlock()
	if queued != 0 || n != 0 {
		t.Fatalf("after the cut: %d changes (%d bytes) still queued", queued, n)
	}
	for end := time.Now().Add(20 * time.Second); got.Load() < 100; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the watcher that reads got %d of the 100 changes", got.Load())
		}
	}
	if fast.lagged() {
		t.Fatal("the watcher that reads was cut off")
	}
}
