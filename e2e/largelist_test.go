package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TestListPagesAndWatchParts: a catalog too large for one message of a
// client with gRPC's default 4 MB limit is still read whole: List a page
// at a time, Watch's snapshot in parts. Instances carry 60 KB of meta
// each, so 24 of them make a 1.4 MB snapshot.
func TestListPagesAndWatchParts(t *testing.T) {
	c := testcluster.New(t)
	a := c.Host("a")
	a.Start()
	a.WaitReady(readyWithin)
	cl, err := client.New(a.APIAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	meta := map[string]string{}
	for k := range 6 {
		meta[fmt.Sprintf("k%d", k)] = strings.Repeat("m", 10000)
	}
	var want []string // service/id, in List's order
	for i := range 24 {
		in := &beaconpb.Instance{Service: "big", Id: fmt.Sprintf("b%02d", i), Address: "127.0.0.1", Port: 80, Meta: meta}
		if _, err := cl.Register(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
		want = append(want, "big/"+in.Id)
	}
	for i := range 10 {
		if _, err := cl.Register(ctx, &beaconpb.Instance{Service: "small", Id: fmt.Sprintf("s%d", i), Address: "127.0.0.1", Port: 81}, nil); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("small/s%d", i))
	}

	// A plain gRPC client, with the default limits.
	conn, err := grpc.NewClient(a.APIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reg := beaconpb.NewRegistryClient(conn)

	// List, 7 at a time: five pages in order, the last without more.
	var got []string
	pages := 0
	req := &beaconpb.ListRequest{Limit: 7}
	err = testcluster.Eventually(10*time.Second, func() error { // the catalog follows the writes
		got, pages, req.StartAfter = nil, 0, ""
		for {
			resp, err := reg.List(ctx, req)
			if err != nil {
				return err
			}
			pages++
			for _, in := range resp.Instances {
				got = append(got, in.Service+"/"+in.Id)
			}
			if !resp.More {
				break
			}
			if len(resp.Instances) != 7 {
				return fmt.Errorf("a page of %d with more after it", len(resp.Instances))
			}
			req.StartAfter = got[len(got)-1]
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("paged list %v", got)
		}
		return nil
	})
	if err != nil || pages != 5 {
		t.Fatalf("List by 7: %d pages: %v", pages, err)
	}
	// The SDK pages for itself, and so does the CLI.
	all, _, err := cl.List(ctx, &beaconpb.ListRequest{Service: "big"})
	if err != nil || len(all) != 24 {
		t.Fatalf("client.List: %d instances, %v", len(all), err)
	}
	out, _, err := a.CLI("services", "big", "-w", "json")
	var listed beaconpb.ListResponse
	if err == nil {
		err = protojson.Unmarshal([]byte(out), &listed)
	}
	if err != nil || len(listed.Instances) != 24 {
		t.Fatalf("beacon services big -w json: %d instances, %v\n%.300s", len(listed.Instances), err, out)
	}
	// A page stops at 1 MiB whatever its limit; start_after is read
	// whatever its letter case, as names are.
	page, err := reg.List(ctx, &beaconpb.ListRequest{Service: "big", Limit: 100})
	if err != nil || !page.More || len(page.Instances) >= 24 || len(page.Instances) == 0 || proto.Size(page) > 2<<20 {
		t.Fatalf("a page of 60 KB instances with limit 100: %d instances, more %v, %d bytes, %v", len(page.Instances), page.More, proto.Size(page), err)
	}
	page, err = reg.List(ctx, &beaconpb.ListRequest{Limit: 1, StartAfter: "BIG/B05"})
	if err != nil || len(page.Instances) != 1 || page.Instances[0].Id != "b06" {
		t.Fatalf("start_after BIG/B05: %v %v", page.GetInstances(), err)
	}
	// Bad paging: InvalidArgument naming the field.
	for _, bad := range []*beaconpb.ListRequest{{Limit: -1}, {StartAfter: "no-slash"}, {StartAfter: "/id"}} {
		_, err := reg.List(ctx, bad)
		field := "start_after"
		if bad.Limit != 0 {
			field = "limit"
		}
		if s := status.Convert(err); s.Code() != codes.InvalidArgument || !strings.Contains(s.Message(), field) {
			t.Errorf("List %v: %v", bad, err)
		}
	}

	// Watch: the snapshot of big comes in parts, each under 4 MB and the
	// last without more, at one revision; together they are the set.
	stream, err := reg.Watch(ctx, &beaconpb.WatchRequest{Service: "big"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	parts := 0
	var rev int64
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch part %d: %v", parts+1, err)
		}
		if m.Type != beaconpb.WatchResponse_SNAPSHOT || rev != 0 && m.Revision != rev {
			t.Fatalf("part %d: %v at revision %d (first part %d)", parts+1, m.Type, m.Revision, rev)
		}
		rev = m.Revision
		parts++
		if size := proto.Size(m); size > 2<<20 {
			t.Fatalf("part %d: %d bytes", parts, size)
		}
		for _, in := range m.Instances {
			ids = append(ids, "big/"+in.Id)
		}
		if !m.More {
			break
		}
	}
	if parts < 2 || !slices.Equal(ids, want[:24]) {
		t.Fatalf("snapshot in %d parts: %v", parts, ids)
	}
	// Then changes, as before.
	if _, err := cl.Register(ctx, &beaconpb.Instance{Service: "big", Id: "late", Address: "127.0.0.1", Port: 82}, nil); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || m.Type != beaconpb.WatchResponse_PUT || len(m.Instances) != 1 || m.Instances[0].Id != "late" || m.Revision <= rev {
		t.Fatalf("after the snapshot: %v %v", m, err)
	}
}
