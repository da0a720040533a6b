package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func putInstance(t *testing.T, cli *clientv3.Client, in Instance) {
	t.Helper()
	b, _ := json.Marshal(&in)
	if _, err := cli.Put(context.Background(), Key("/beacon/", in.Service, in.ID), string(b)); err != nil {
		t.Fatal(err)
	}
}

// deleteKey deletes key and returns the revision of the delete.
func deleteKey(t *testing.T, cli *clientv3.Client, key string) int64 {
	t.Helper()
	resp, err := cli.Delete(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// caughtUp waits until the catalog has applied every change up to rev
// (whatever it made of them), so that what it shows next can be asserted
// at once.
func caughtUp(t *testing.T, cat *Catalog, rev int64) {
	t.Helper()
	waitCatalog(t, fmt.Sprintf("revision %d", rev), func() bool { return cat.Revision() >= rev })
}

func ids(list []*Instance) map[string]bool {
	m := map[string]bool{}
	for _, in := range list {
		m[in.ID] = true
	}
	return m
}

func runningCatalog(t *testing.T) (*Catalog, *clientv3.Client) {
	t.Helper()
	cli, _ := etcdtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cat := NewCatalog(cli, "/beacon/")
	go cat.Run(ctx)
	select {
	case <-cat.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("the catalog was not ready after 20s")
	}
	return cat, cli
}

// A deleted instance leaves the service, the node index and, with its
// last instance, the list of services; a subscriber is told.
func TestCatalogAppliesDeletes(t *testing.T) {
	cat, cli := runningCatalog(t)
	_, _, sub := cat.Subscribe(func(*Instance) bool { return true })
	defer cat.Unsubscribe(sub) // the watcher count is the package's: others check it
	putInstance(t, cli, Instance{ID: "a", Service: "web", Node: "n1", Address: "127.0.0.1", Port: 80})
	putInstance(t, cli, Instance{ID: "b", Service: "web", Node: "n2", Address: "127.0.0.2", Port: 80})
	waitCatalog(t, "both instances", func() bool { return len(cat.Service("web")) == 2 })

	caughtUp(t, cat, deleteKey(t, cli, Key("/beacon/", "web", "a")))
	if got := ids(cat.Service("web")); !got["b"] || len(got) != 1 {
		t.Fatalf("web after deleting a: %v", got)
	}
	if _, ok := cat.Instance("web", "a"); ok {
		t.Fatal("Instance still finds the deleted a")
	}
	if n := cat.NodeInstances("n1"); len(n) != 0 {
		t.Fatalf("n1's index after its only instance was deleted: %v", n)
	}
	if n := cat.NodeInstances("n2"); len(n) != 1 {
		t.Fatalf("n2's index: %v", n)
	}

	caughtUp(t, cat, deleteKey(t, cli, Key("/beacon/", "web", "b")))
	if n := cat.Service("web"); len(n) != 0 {
		t.Fatalf("web after deleting its last instance: %v", n)
	}
	if names := cat.Services(); len(names) != 0 {
		t.Fatalf("services once web has no instance: %v", names)
	}
	var deleted []string
	for end := time.After(20 * time.Second); len(deleted) < 2; {
		select {
		case ev := <-sub.Events():
			if ev.Type == EventDelete {
				deleted = append(deleted, ev.Instance.ID)
			}
		case <-end:
			t.Fatalf("a subscriber was told of deletes %v, want a and b", deleted)
		}
	}
	if deleted[0] != "a" || deleted[1] != "b" {
		t.Fatalf("delete events %v, want [a b]", deleted)
	}
}

// The node index follows an instance that moves to another node, and
// looks names up case-insensitively.
func TestCatalogNodeIndex(t *testing.T) {
	cat, cli := runningCatalog(t)
	putInstance(t, cli, Instance{ID: "a", Service: "web", Node: "Web1", Address: "127.0.0.1", Port: 80})
	waitCatalog(t, "a on Web1", func() bool { return len(cat.NodeInstances("web1")) == 1 })
	putInstance(t, cli, Instance{ID: "a", Service: "web", Node: "web2", Address: "127.0.0.1", Port: 80})
	waitCatalog(t, "a on web2", func() bool { return len(cat.NodeInstances("WEB2")) == 1 })
	if n := cat.NodeInstances("web2"); len(n) != 1 || n[0].Node != "web2" {
		t.Fatalf("web2's index: %v", n)
	}
	if n := cat.NodeInstances("web1"); len(n) != 0 {
		t.Fatalf("web1 still indexes the instance that moved to web2: %v", n)
	}
}

// A relist (after a compaction or a broken watch) takes etcd's state as
// it is: what was deleted meanwhile goes, with a delete event; what was
// added or changed comes, with a put; the node index is rebuilt.
func TestCatalogRelist(t *testing.T) {
	cli, _ := etcdtest.New(t)
	ctx := context.Background()
	cat := NewCatalog(cli, "/beacon/")
	putInstance(t, cli, Instance{ID: "gone", Service: "web", Node: "n1", Address: "127.0.0.1", Port: 80})
	putInstance(t, cli, Instance{ID: "kept", Service: "web", Node: "n1", Address: "127.0.0.1", Port: 80})
	if _, err := cat.relist(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, sub := cat.Subscribe(func(*Instance) bool { return true })
	defer cat.Unsubscribe(sub) // the watcher count is the package's: others check it

	// Changes the catalog's watch never saw, then compacted away.
	deleteKey(t, cli, Key("/beacon/", "web", "gone"))
	putInstance(t, cli, Instance{ID: "new", Service: "web", Node: "n2", Address: "127.0.0.2", Port: 80})
	resp, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	rev, err := cat.relist(ctx)
	if err != nil || rev != resp.Header.Revision {
		t.Fatalf("relist: rev %d %v, want %d", rev, err, resp.Header.Revision)
	}

	if got := ids(cat.Service("web")); len(got) != 2 || !got["kept"] || !got["new"] {
		t.Fatalf("web after the relist: %v, want kept and new", got)
	}
	if n := ids(cat.NodeInstances("n1")); len(n) != 1 || !n["kept"] {
		t.Fatalf("n1's index after the relist: %v", n)
	}
	if n := ids(cat.NodeInstances("n2")); len(n) != 1 || !n["new"] {
		t.Fatalf("n2's index after the relist: %v", n)
	}
	got := map[string]EventType{}
	for len(got) < 2 {
		select {
		case ev := <-sub.Events():
			got[ev.Instance.ID] = ev.Type
		case <-time.After(20 * time.Second):
			t.Fatalf("events after the relist: %v, want a delete of gone and a put of new", got)
		}
	}
	if got["gone"] != EventDelete || got["new"] != EventPut {
		t.Fatalf("events after the relist: %v, want a delete of gone and a put of new", got)
	}
}
