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
	"go.uber.org/zap"
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
	cat := NewCatalog(cli, "/beacon/", zap.NewNop())
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
	read := make(chan int, 1)
	go func() {
		n := 0
		_ = fast.Forward(ctx, func(Event) error {
			if n++; n == 100 {
				read <- n
			}
			return nil
		})
	}()

	blob := strings.Repeat("m", 8<<10)
	for i := 0; i < 100; i++ { // 800 KiB of meta in 100 changes
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
	if n := slow.bytes.Load(); len(slow.ch) != 0 {
		t.Fatalf("after the cut: %d changes (%d bytes) still queued", len(slow.ch), n)
	}
	select {
	case <-read:
	case <-time.After(20 * time.Second):
		t.Fatal("the watcher that reads did not get the 100 changes")
	}
	if fast.lagged() {
		t.Fatal("the watcher that reads was cut off")
	}
}
