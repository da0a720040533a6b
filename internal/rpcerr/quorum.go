package rpcerr

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// noQuorum starts the message of every error that failed for want of a
// quorum, whatever etcd said: DESIGN.md promises Unavailable without
// quorum, and the user should read why.
const noQuorum = "no quorum: "

// leaderProbeTimeout bounds asking whether the cluster has a leader after
// a write timed out.
const leaderProbeTimeout = time.Second

// FromCluster maps err as From does, and names a missing quorum: etcd's
// no-leader error always, and a timeout (etcd gives up on a proposal after
// its request timeout, about 7 s, with "context deadline exceeded") when
// none of cli's endpoints knows a leader now. Either becomes Unavailable
// "no quorum: …".
func FromCluster(cli *clientv3.Client, err error) error {
	if err == nil {
		return nil
	}
	noLeader := errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrGRPCNoLeader)
	err = From(err)
	code, msg := status.Code(err), status.Convert(err).Message()
	switch {
	case strings.HasPrefix(msg, noQuorum):
		return err
	case noLeader:
		return status.Error(codes.Unavailable, noQuorum+"the cluster has no leader: "+msg)
	case code != codes.DeadlineExceeded && code != codes.Unavailable:
		return err
	case !leaderless(cli):
		return err
	}
	return status.Error(codes.Unavailable, noQuorum+"no leader is reachable from this agent (the cluster lost its quorum, or this host is cut off from it); the change was not confirmed: "+msg)
}

// leaderless reports whether no endpoint of cli that answers knows a
// leader (a serializable status, which a member without quorum answers).
func leaderless(cli *clientv3.Client) bool {
	ctx, cancel := context.WithTimeout(context.Background(), leaderProbeTimeout)
	defer cancel()
	for _, ep := range cli.Endpoints() {
		if st, err := cli.Status(ctx, ep); err == nil && st.Leader != 0 {
			return false
		}
	}
	return true
}
