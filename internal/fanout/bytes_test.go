package fanout

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
)

// TestSlowSubscriberBytes: a subscriber that reads nothing while large
// values are written is dropped once the bytes it left unread pass
// MaxBytes, long before the count Limit, with what it had queued
// released and the bound named; a value larger than MaxBytes still
// reaches a subscriber that keeps up (one change is never refused for
// its size alone).
func TestSlowSubscriberBytes(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx := testCtx(t)
	h := New(cli)
	h.SetLimits(1000, 256<<10)
	slow, err := h.Subscribe(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := h.Subscribe(ctx, "/p/")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()

	value := strings.Repeat("x", 64<<10)
	for i := 0; i < 8; i++ { // 512 KiB in 8 events: over the bytes, far under the count
		if _, err := cli.Put(ctx, fmt.Sprintf("/p/%d", i), value); err != nil {
			t.Fatal(err)
		}
		if _, err := nextWithin(t, fast, 10*time.Second); err != nil {
			t.Fatalf("fast subscriber at put %d: %v", i, err)
		}
	}
	slow.mu.Lock()
	queued, bytes := slow.queued, slow.bytes
	slow.mu.Unlock()
	if queued != 0 || bytes != 0 {
		t.Fatalf("the dropped subscriber still holds %d events, %d bytes", queued, bytes)
	}
	_, err = nextWithin(t, slow, time.Second)
	var se *SlowError
	if !errors.Is(err, ErrSlow) || !errors.As(err, &se) || se.Limit != LimitBytes || se.Value != 256<<10 ||
		!strings.Contains(err.Error(), "max-watch-buffer-bytes 262144") {
		t.Fatalf("slow subscriber: %v, want ErrSlow naming max-watch-buffer-bytes 262144", err)
	}

	big := strings.Repeat("y", 512<<10)
	r, err := cli.Put(ctx, "/p/big", big)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := nextWithin(t, fast, 10*time.Second)
	if err != nil || len(evs) != 1 || evs[0].Kv.ModRevision != r.Header.Revision {
		t.Fatalf("a value over MaxBytes to a subscriber that keeps up: %v %v", evs, err)
	}
	fast.mu.Lock()
	if fast.bytes != 0 {
		t.Errorf("a subscriber that read everything counts %d bytes queued", fast.bytes)
	}
	fast.mu.Unlock()
}
