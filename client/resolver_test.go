package client

import (
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
)

// partsRegistry is a Registry server whose Watch sends a snapshot in two
// parts, the second only when the test says.
type partsRegistry struct {
	beaconpb.UnimplementedRegistryServer
	sentFirst chan struct{}
	sendRest  chan struct{}
}

func (p *partsRegistry) Watch(_ *beaconpb.WatchRequest, s beaconpb.Registry_WatchServer) error {
	in := func(id, addr string) *beaconpb.Instance {
		return &beaconpb.Instance{Service: "svc", Id: id, Address: addr, Port: 80, Weight: 1, Status: "passing"}
	}
	if err := s.Send(&beaconpb.WatchResponse{Type: beaconpb.WatchResponse_SNAPSHOT, Revision: 5, More: true,
		Instances: []*beaconpb.Instance{in("a", "127.0.0.1")}}); err != nil {
		return err
	}
	close(p.sentFirst)
	<-p.sendRest
	if err := s.Send(&beaconpb.WatchResponse{Type: beaconpb.WatchResponse_SNAPSHOT, Revision: 5,
		Instances: []*beaconpb.Instance{in("b", "127.0.0.2")}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// recordingConn is the channel's side of a resolver: it keeps what the
// resolver tells it.
type recordingConn struct {
	resolver.ClientConn
	states chan resolver.State
}

func (c *recordingConn) UpdateState(s resolver.State) error { c.states <- s; return nil }
func (c *recordingConn) ReportError(error)                  {}

// TestResolverSnapshotInParts: the channel hears of a snapshot sent in
// parts once, whole, never of its first part alone.
func TestResolverSnapshotInParts(t *testing.T) {
	reg := &partsRegistry{sentFirst: make(chan struct{}), sendRest: make(chan struct{})}
	srv := grpc.NewServer()
	beaconpb.RegisterRegistryServer(srv, reg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	cc := &recordingConn{states: make(chan resolver.State, 4)}
	r, err := NewResolverBuilder(lis.Addr().String()).Build(resolver.Target{URL: url.URL{Scheme: Scheme, Path: "/svc"}}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case <-reg.sentFirst:
	case <-time.After(10 * time.Second):
		t.Fatal("the resolver never watched")
	}
	close(reg.sendRest)
	select {
	case s := <-cc.states:
		var got []string
		for _, a := range s.Addresses {
			got = append(got, a.Addr)
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{"127.0.0.1:80", "127.0.0.2:80"}) {
			t.Fatalf("first state the channel heard: %v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no state after the whole snapshot")
	}
}
