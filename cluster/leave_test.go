package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// threeVoters starts a cluster of three etcd members in the test's
// process, each on loopback ports of its own; stop[i] stops member i
// (once; the rest stop with the test).
func threeVoters(t *testing.T) (es []*embed.Etcd, stop []func()) {
	t.Helper()
	dir := t.TempDir()
	names := []string{"v1", "v2", "v3"}
	cus, pus := make([]*url.URL, 3), make([]*url.URL, 3)
	var initial []string
	for i, n := range names {
		cus[i], _ = url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
		pus[i], _ = url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
		initial = append(initial, n+"="+pus[i].String())
	}
	es = make([]*embed.Etcd, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, n := range names {
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = n, filepath.Join(dir, n)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cus[i]}, []url.URL{*cus[i]}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pus[i]}, []url.URL{*pus[i]}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		wg.Add(1)
		go func() { // members start together: each waits for the others
			defer wg.Done()
			es[i], errs[i] = embed.StartEtcd(cfg)
		}()
	}
	wg.Wait()
	for i, e := range es {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		once := sync.OnceFunc(e.Close)
		stop = append(stop, once)
		t.Cleanup(once)
	}
	for _, e := range es {
		select {
		case <-e.Server.ReadyNotify():
		case <-time.After(30 * time.Second):
			t.Fatal("a member of the three was not ready after 30s")
		}
	}
	return es, stop
}

// With one of three voters down, a second may not leave: the check is
// beacon's own (ErrQuorumAtRisk, FAILED_PRECONDITION), told apart from
// etcd's reconfiguration check (rpctypes.ErrUnhealthy, UNAVAILABLE, which
// RemoveMember would otherwise retry until its context ends) by its type,
// and nothing is removed.
func TestLeaveRefusedWithoutQuorum(t *testing.T) {
	es, stop := threeVoters(t)
	stop[2]() // v3 is down
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{es[0].Clients[0].Addr().String()},
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := uint64(es[1].Server.MemberID())

	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrQuorumAtRisk) || errors.Is(err, rpctypes.ErrUnhealthy) {
			t.Fatalf("%s of a voter with another down: %v, want ErrQuorumAtRisk", what, err)
		}
		if code := status.Code(rpcerr.From(err)); code != codes.FailedPrecondition {
			t.Fatalf("%s: code %v, want FailedPrecondition", what, code)
		}
		if !strings.Contains(err.Error(), "v3") {
			t.Fatalf("%s: %q does not name the voter that is down", what, err)
		}
	}
	refused("CheckLeave", CheckLeave(ctx, cli, id))
	refused("RemoveMember", RemoveMember(ctx, cli, id))
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("members after the refusals: %v %v, want the 3 untouched", ml, err)
	}
}

// The only voter may not leave either: the cluster would end with it.
func TestLeaveRefusedToTheOnlyVoter(t *testing.T) {
	cli, e := etcdtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := RemoveMember(ctx, cli, uint64(e.Server.MemberID()))
	if !errors.Is(err, ErrQuorumAtRisk) || status.Code(rpcerr.From(err)) != codes.FailedPrecondition {
		t.Fatalf("RemoveMember of the only voter: %v, want ErrQuorumAtRisk (FailedPrecondition)", err)
	}
}
