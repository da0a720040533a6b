package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
)

// A catalog whose watch lost an event (here, dropped by a test hook) finds
// out by its count check and relists, instead of answering without the
// instance for as long as the agent runs.
func TestCatalogRecoversALostEvent(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cat := NewCatalog(cli, "/beacon/", zap.NewNop())
	cat.checkEvery = 100 * time.Millisecond
	lost := []byte("/beacon/services/web/lost")
	dropped := false
	cat.testDrop = func(kv *mvccpb.KeyValue) bool { // under cat.mu
		if !dropped && bytes.Equal(kv.Key, lost) {
			dropped = true
			return true
		}
		return false
	}
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
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got := ids(); got["kept"] && got["lost"] {
			return
		}
	}
	t.Fatalf("the catalog still lacks the instance whose event was lost: %v", ids())
}
