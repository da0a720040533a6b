package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// With one of three voters down, a second may not leave: the check is
// beacon's own (ErrQuorumAtRisk, FAILED_PRECONDITION), told apart from
// etcd's reconfiguration check (rpctypes.ErrUnhealthy, UNAVAILABLE, which
// RemoveMember would otherwise retry until its context ends) by its type,
// and nothing is removed.
func TestLeaveRefusedWithoutQuorum(t *testing.T) {
	es, stop := etcdtest.Cluster(t, 3)
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
