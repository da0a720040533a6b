package acl

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// A listing of every service shows a token the services it may read:
// List, List a page at a time, and Watch (snapshot and changes).
func TestListEveryServiceFiltered(t *testing.T) {
	a := startAgent(t, testEtcd(t), true)
	mgmt := a.bootstrap(t)
	secret, _ := a.token(t, mgmt, "service:web*:read")
	admin := beaconpb.NewRegistryClient(a.dialTCP(t, mgmt))
	register := func(service, id string) {
		t.Helper()
		_, err := admin.Register(ctxT(t), &beaconpb.RegisterRequest{Instance: &beaconpb.Instance{Service: service, Id: id, Port: 80, Address: "127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range [][2]string{{"api", "a1"}, {"db", "d1"}, {"web", "w1"}, {"web", "w2"}, {"web-admin", "x1"}, {"zeta", "z1"}} {
		register(r[0], r[1])
	}
	// The catalog is fed by a watch: wait until the management token sees all six.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := admin.List(ctxT(t), &beaconpb.ListRequest{})
		if err == nil && len(resp.Instances) == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	reg := beaconpb.NewRegistryClient(a.dialTCP(t, secret))
	want := []string{"web/w1", "web/w2", "web-admin/x1"}
	resp, err := reg.List(ctxT(t), &beaconpb.ListRequest{})
	if got := ids(resp.GetInstances()); err != nil || !slices.Equal(got, want) {
		t.Errorf("List: %v %v; want %v", got, err, want)
	}
	// A page at a time, as the SDK pages: by the last instance answered.
	var paged []string
	page := &beaconpb.ListRequest{Limit: 1}
	for range 10 {
		resp, err := reg.List(ctxT(t), page)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, ids(resp.Instances)...)
		if !resp.More {
			break
		}
		last := resp.Instances[len(resp.Instances)-1]
		page.StartAfter = last.Service + "/" + last.Id
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paged List: %v; want %v", paged, want)
	}

	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	w, err := reg.Watch(ctx, &beaconpb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var snap []string
	for {
		m, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		snap = append(snap, ids(m.Instances)...)
		if m.Type != beaconpb.WatchResponse_SNAPSHOT || !m.More {
			break
		}
	}
	if !slices.Equal(snap, want) {
		t.Errorf("Watch snapshot: %v; want %v", snap, want)
	}
	register("db", "d2") // not shown
	register("web", "w3")
	m, err := w.Recv()
	if got := ids(m.GetInstances()); err != nil || !slices.Equal(got, []string{"web/w3"}) {
		t.Errorf("Watch change: %v %v; want web/w3 alone", got, err)
	}
}

func ids(ins []*beaconpb.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.Service+"/"+in.Id)
	}
	return out
}
