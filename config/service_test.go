package config

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestRemoteLargeSnapshot: a snapshot over gRPC's 4 MiB message limit
// arrives in chunks and is put back together by Remote.
func TestRemoteLargeSnapshot(t *testing.T) {
	cli := startEtcd(t)
	store := NewStore(cli, "/beacon/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range []string{"big/a", "big/b", "big/c", "big/d", "big/e"} {
		if _, err := store.Put(ctx, k, bytes.Repeat([]byte(k[4:]), MaxValueLen)); err != nil {
			t.Fatal(err)
		}
	}
	if msgs := UpdateProto(Update{Snapshot: true, Entries: []Entry{{Key: "x", Value: make([]byte, MaxValueLen)}, {Key: "y", Value: make([]byte, MaxValueLen)},
		{Key: "z", Value: make([]byte, MaxValueLen)}}}); len(msgs) != 3 || !msgs[0].More || !msgs[1].More || msgs[2].More {
		t.Fatalf("3 MiB snapshot in %d messages", len(msgs))
	}

	srv := grpc.NewServer()
	beaconpb.RegisterConfigServer(srv, NewService(store))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	done := errors.New("done")
	var snap Update
	err = NewRemote(beaconpb.NewConfigClient(conn)).Watch(ctx, "big/", 0, func(u Update) error {
		snap = u
		return done
	})
	if !errors.Is(err, done) || !snap.Snapshot || len(snap.Entries) != 5 || snap.Entries[4].Key != "big/e" ||
		len(snap.Entries[4].Value) != MaxValueLen {
		t.Fatalf("snapshot: %v, %d entries", err, len(snap.Entries))
	}
}
