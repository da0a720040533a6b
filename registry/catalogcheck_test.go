package registry

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
)

// A catalog that lost an instance (as if its watch had dropped the put:
// the test takes it out of the catalog's memory) finds out by its count
// check and relists, instead of answering without the instance for as
// long as the agent runs.
func TestCatalogRecoversALostEvent(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cat := NewCatalog(cli, "/beacon/")
	cat.checkEvery = 100 * time.Millisecond
	go cat.Run(ctx)
	<-cat.Ready()

	// A bad value is counted on both sides: no relist for it.
	if _, err := cli.Put(ctx, "/beacon/services/web/garbage", "not json"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"kept", "lost"} {
		b, _ := json.Marshal(&Instance{ID: id, Service: "web", Node: "n1", Address: "127.0.0.1", Port: 80})
		if _, err := cli.Put(ctx, "/beacon/services/web/"+id, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	ids := func() map[string]bool {
		m := map[string]bool{}
		for _, in := range cat.Service("web") {
			m[in.ID] = true
		}
		return m
	}
	waitFor := func(what string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if got := ids(); got["kept"] && got["lost"] {
				return
			}
		}
		t.Fatalf("%s: the catalog lacks an instance: %v", what, ids())
	}
	waitFor("before the loss")

	cat.mu.Lock()
	e := cat.services["web"]
	lost := e.byID["lost"]
	e.remove("lost")
	cat.unindexLocked(lost)
	cat.mu.Unlock()
	if ids()["lost"] {
		t.Fatal("the test could not take the instance out of the catalog")
	}
	waitFor("after the loss")
}
