package embedded

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestWatchAfterTokenTTL: under etcd auth, a watch opened on the agent's
// client after its watch stream sat idle longer than etcd's token TTL is
// still served. etcd checks a new watch against the token its stream was
// opened with, and a simple token no request used for a TTL is gone.
func TestWatchAfterTokenTTL(t *testing.T) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[2]%250)
	dir := t.TempDir()
	o := Options{
		Name: "m1", DataDir: dir, Namespace: "/beacon/", Role: cluster.RoleMember,
		ClientURL: "http://" + ip + ":2379", PeerURL: "http://" + ip + ":2380",
		Logger: zap.NewNop(), ACL: true, EtcdCredentialsFile: filepath.Join(dir, "etcd-credentials.json"),
		authTokenTTL: 2,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cli := n.LocalClient()
	watchOnce := func(key string) error {
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer wcancel()
		wch := cli.Watch(wctx, key)
		if _, err := cli.Put(ctx, key, "v"); err != nil {
			return err
		}
		select {
		case resp := <-wch:
			if err := resp.Err(); err != nil {
				return err
			}
			if len(resp.Events) == 0 {
				return fmt.Errorf("no event: %+v", resp)
			}
			return nil
		case <-time.After(10 * time.Second):
			return fmt.Errorf("no answer in 10 s")
		}
	}
	// The stream is opened, one watch stays on it, then it sits idle.
	keep := cli.Watch(clientv3.WithRequireLeader(ctx), "/beacon/keep")
	if err := watchOnce("/beacon/first"); err != nil {
		t.Fatalf("a watch at once: %v", err)
	}
	time.Sleep(3 * time.Second) // longer than the token's TTL: the condition under test
	if err := watchOnce("/beacon/later"); err != nil {
		t.Fatalf("a watch after the stream sat idle past the token TTL: %v", err)
	}
	_ = keep
}
