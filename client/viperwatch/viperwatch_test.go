package viperwatch

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/config"
	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/spf13/viper"
	"google.golang.org/grpc"
)

// configAgent serves the Config service over gRPC on loopback, backed by
// an etcd in the test's process: the agent's side without the rest.
func configAgent(t *testing.T) (addr string, store *config.Store) {
	t.Helper()
	cli, _ := etcdtest.New(t)
	store = config.NewStore(cli, "/beacon/")
	srv := grpc.NewServer()
	beaconpb.RegisterConfigServer(srv, config.NewService(store))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), store
}

func TestWatch(t *testing.T) {
	addr, store := configAgent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := store.Put(ctx, "app/db/host", []byte("db1")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, "other/x", []byte("not mine")); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	v := viper.New()
	v.SetDefault("db.port", 5432)
	changes := make(chan int64, 100)
	feed, err := Watch(ctx, c, "app/", v, WithOnChange(func(rev int64) { changes <- rev }))
	if err != nil {
		t.Fatal(err)
	}
	get := func(fn func(v *viper.Viper) any) any {
		var out any
		feed.View(func(v *viper.Viper) { out = fn(v) })
		return out
	}
	// The snapshot is in before Watch returns.
	if h := get(func(v *viper.Viper) any { return v.GetString("db.host") }); h != "db1" {
		t.Fatalf("db.host = %v after Watch", h)
	}
	if x := get(func(v *viper.Viper) any { return v.IsSet("x") }); x != false {
		t.Fatal("a key outside the prefix is in viper")
	}
	<-changes

	rev, _ := store.Put(ctx, "app/db/port", []byte("6543"))
	waitRev(t, changes, rev)
	if p := get(func(v *viper.Viper) any { return v.GetInt("db.port") }); p != 6543 {
		t.Fatalf("db.port = %v, want 6543 from the store", p)
	}
	_, rev, _ = store.Delete(ctx, "app/db/port")
	waitRev(t, changes, rev)
	if p := get(func(v *viper.Viper) any { return v.GetInt("db.port") }); p != 5432 {
		t.Fatalf("db.port = %v after the delete, want the default 5432", p)
	}
	if feed.Revision() != rev {
		t.Fatalf("Revision %d, want %d", feed.Revision(), rev)
	}
	cancel()
	<-feed.Done()

	if _, err := Watch(context.Background(), c, "/abs", viper.New()); err == nil {
		t.Fatal("a bad prefix: no error")
	}
}

func waitRev(t *testing.T, ch chan int64, rev int64) {
	t.Helper()
	for {
		select {
		case r := <-ch:
			if r >= rev {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("viper never reached revision %d", rev)
		}
	}
}
