package rpcerr

import (
	"context"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/etcdtest"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFromCluster: etcd's no-leader error is Unavailable "no quorum"; a
// timeout while the cluster has a leader stays DeadlineExceeded, and
// other errors keep their codes.
func TestFromCluster(t *testing.T) {
	cli, _ := etcdtest.New(t)
	err := FromCluster(cli, rpctypes.ErrNoLeader)
	if status.Code(err) != codes.Unavailable || !strings.HasPrefix(status.Convert(err).Message(), "no quorum: ") {
		t.Errorf("no leader: %v", err)
	}
	if err := FromCluster(cli, context.DeadlineExceeded); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a timeout with a leader: %v", err)
	}
	if err := FromCluster(cli, rpctypes.ErrMemberNotFound); status.Code(err) != codes.NotFound {
		t.Errorf("member not found: %v", err)
	}
	if FromCluster(cli, nil) != nil {
		t.Error("nil is no error")
	}
}
