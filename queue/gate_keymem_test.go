package queue

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Views of key gates do not each keep the config key's value. One value
// of 1 MiB and 200 gates on it that wait for another value (a client
// writes 1 MiB and 200 small gates): before, each view kept its own copy
// of the value, 200 MiB live (1,000 gates on an agent: its heap 7 MB →
// 1.1 GB); now each keeps its hash.
func TestKeyGateViewsKeepNoValue(t *testing.T) {
	b := newBroker(t, "n1")
	ctx := ctxT(t)
	const n = 200
	key := "big/" + queueName(t)
	if _, err := b.cli.Put(ctx, "/beacon/config/"+key, strings.Repeat("v", 1<<20-64)); err != nil {
		t.Fatal(err)
	}
	var views []*view
	t.Cleanup(func() {
		for _, v := range views {
			b.release(v)
		}
	})
	for i := range n {
		q := fmt.Sprintf("%s-%d", queueName(t), i)
		if _, err := b.SetGate(ctx, q, GateCondition{Key: key, Value: []byte("another"), HasValue: true}); err != nil {
			t.Fatal(err)
		}
		v, err := b.acquire(q)
		if err != nil {
			t.Fatal(err)
		}
		views = append(views, v)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < len(views); {
		v := views[i]
		v.mu.Lock()
		known := v.cfg.known && v.cfg.exists
		v.mu.Unlock()
		switch {
		case known:
			i++
		case time.Now().After(deadline):
			t.Fatalf("view %d has not read the key in 60 s", i)
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	if m.HeapInuse > 100<<20 {
		t.Errorf("with %d views of key gates on one 1 MiB value, %d MiB of heap in use", n, m.HeapInuse>>20)
	}
	t.Logf("%d views: %d MiB of heap in use", n, m.HeapInuse>>20)
}
