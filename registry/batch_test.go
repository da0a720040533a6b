package registry

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// TestBatchNeverCommitsForACallerThatGaveUp: while the cluster is down
// (no quorum), a create whose caller gives up is never written once the
// cluster is back: neither one whose transaction nobody waits for any
// more, nor one sharing a transaction with a caller who still waits
// (that one is written).
func TestBatchNeverCommitsForACallerThatGaveUp(t *testing.T) {
	dir := t.TempDir()
	e, endpoint, err := etcdtest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			e.Close()
		}
	})
	cli := etcdtest.Client(t, endpoint)
	ctx := context.Background()
	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	b := &createBatcher{cli: cli}
	type result struct {
		created bool
		err     error
	}
	create := func(ctx context.Context, key string) chan result {
		ch := make(chan result, 1)
		go func() {
			_, created, err := b.create(ctx, key, "{}", lease.ID)
			ch <- result{created, err}
		}()
		return ch
	}
	state := func() (pending int, running bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.pending), b.running
	}
	waitFor := func(what string, d time.Duration, ok func() bool) bool {
		deadline := time.Now().Add(d)
		for !ok() {
			if time.Now().After(deadline) {
				t.Logf("not within %s: %s", d, what)
				return false
			}
			time.Sleep(5 * time.Millisecond)
		}
		return true
	}
	answer := func(name string, ch chan result) result {
		select {
		case r := <-ch:
			return r
		case <-time.After(30 * time.Second):
			t.Fatalf("create %s: no answer within 30s", name)
			return result{}
		}
	}

	// The only member stops: no quorum.
	e.Close()
	stopped = true

	// x's transaction is in flight, waiting for the cluster...
	xctx, xcancel := context.WithCancel(ctx)
	defer xcancel()
	x := create(xctx, "/beacon/services/gaveup/x")
	if !waitFor("x's transaction in flight", 10*time.Second, func() bool { p, r := state(); return p == 0 && r }) {
		t.Fatal("the batcher never took x")
	}
	// ...a and b queue behind it...
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	a := create(actx, "/beacon/services/gaveup/a")
	bctx, bcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer bcancel()
	bres := create(bctx, "/beacon/services/gaveup/b")
	if !waitFor("a and b queued", 10*time.Second, func() bool { p, _ := state(); return p == 2 }) {
		t.Fatal("a and b never queued")
	}
	// ...x's caller gives up: nobody waits for x's transaction any more.
	xcancel()
	if r := answer("x", x); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("create x after its caller gave up: %+v", r)
	}
	// a and b go together next (a transaction nobody waits for ends at
	// once; without that, they wait behind x's until the cluster is back).
	waitFor("a and b taken into a transaction", 10*time.Second, func() bool { p, _ := state(); return p == 0 })
	// a's caller gives up; b's still waits.
	acancel()
	if r := answer("a", a); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("create a after its caller gave up: %+v", r)
	}

	// The cluster is back.
	e2 := restartAt(t, dir, endpoint)
	defer e2.Close()
	if r := answer("b", bres); r.err != nil || !r.created {
		t.Fatalf("create b, whose caller waited: %+v", r)
	}
	// b's answer came after every earlier transaction ended (and after
	// the undo of its batch's abandoned keys): what is there now stays.
	for _, k := range []string{"x", "a", "b"} {
		resp, err := cli.Get(ctx, "/beacon/services/gaveup/"+k)
		if err != nil {
			t.Fatal(err)
		}
		if want := k == "b"; (resp.Count == 1) != want {
			t.Errorf("key of %s written: %v, want %v", k, resp.Count == 1, want)
		}
	}
}

// restartAt starts again the member etcdtest.Start ran with data in dir,
// on the same client URL.
func restartAt(t *testing.T, dir, endpoint string) *embed.Etcd {
	t.Helper()
	cu, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse("http://" + cu.Hostname() + ":2380")
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("restarted etcd not ready after 30s")
		return nil
	}
}
