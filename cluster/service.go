package cluster

import (
	"context"
	"fmt"
	"strings"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Local is the agent that serves the Cluster API: who it is, and how it
// leaves.
type Local interface {
	Name() string
	Role() Role
	// Leave removes this agent from the cluster and arranges its stop.
	Leave(ctx context.Context) (string, error)
	// WaitStopped waits until the agent has stopped all but its API.
	WaitStopped(ctx context.Context) error
}

// Service implements the Cluster gRPC service on one agent.
type Service struct {
	beaconpb.UnimplementedClusterServer
	cli       *clientv3.Client
	namespace string
	local     Local
}

// NewService returns the Cluster service of the agent local.
func NewService(cli *clientv3.Client, namespace string, local Local) *Service {
	return &Service{cli: cli, namespace: namespace, local: local}
}

// Members lists members, proxies and external agents, each member with
// its raft state: the rows of Status, so that no field of a Member is
// left at a zero that reads as false ("healthy": false).
func (s *Service) Members(ctx context.Context, _ *beaconpb.MembersRequest) (*beaconpb.MembersResponse, error) {
	st, err := Status(ctx, s.cli, s.namespace)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	return &beaconpb.MembersResponse{ClusterId: st.ClusterId, Local: s.local.Name(), Members: st.Members}, nil
}

// Status lists members with their raft state.
func (s *Service) Status(ctx context.Context, _ *beaconpb.StatusRequest) (*beaconpb.StatusResponse, error) {
	resp, err := Status(ctx, s.cli, s.namespace)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	resp.Local = s.local.Name()
	resp.LocalRole = string(s.local.Role())
	if rev, err := s.cli.Get(ctx, s.namespace, clientv3.WithCountOnly(), clientv3.WithSerializable()); err == nil {
		resp.Revision = rev.Header.Revision
	}
	return resp, nil
}

// Leave removes this agent from the cluster and stops it.
func (s *Service) Leave(ctx context.Context, _ *beaconpb.LeaveRequest) (*beaconpb.LeaveResponse, error) {
	msg, err := s.local.Leave(ctx)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	// Answer once the agent has stopped and freed its ports, so that the
	// caller can start another agent in its place at once. Should the
	// caller stop waiting first, the agent stops all the same.
	name := s.local.Name()
	if err := s.local.WaitStopped(ctx); err != nil {
		return nil, rpcerr.From(fmt.Errorf("%s left the cluster and is still stopping: %w", name, err))
	}
	return &beaconpb.LeaveResponse{Name: name, Message: msg + "; stopped"}, nil
}

// RemoveMember forces another member, gone for good, out of the cluster
// (beacon force-leave); see removeDeadMember for when it may.
func (s *Service) RemoveMember(ctx context.Context, req *beaconpb.RemoveMemberRequest) (*beaconpb.RemoveMemberResponse, error) {
	name := req.GetName()
	if name == s.local.Name() {
		return nil, rpcerr.From(rpcerr.Wrapf(ErrBadMemberName,
			"%s is the agent asked: force-leave removes another member; to remove this one, run `beacon leave` here", name))
	}
	if s.local.Role() == RoleExternal {
		return nil, rpcerr.From(rpcerr.Wrapf(ErrNotAMember,
			"%s fronts an external etcd cluster (--endpoints), whose membership is not beacon's to change; use etcdctl member remove there", s.local.Name()))
	}
	r, err := removeDeadMember(ctx, s.cli, s.namespace, name)
	if err != nil {
		return nil, rpcerr.From(err)
	}
	label := r.Name
	if label == "" {
		label = fmt.Sprintf("%x", r.ID)
	}
	msg := fmt.Sprintf("removed %s (%s %x) from the cluster (%s); voters now: %s. Its data dir can no longer be resumed: to bring that host back, delete its data dir and start it with --join",
		label, r.Role, r.ID, r.Why, strings.Join(r.Voters, ", "))
	return &beaconpb.RemoveMemberResponse{Name: r.Name, Id: fmt.Sprintf("%x", r.ID), Role: string(r.Role), Message: msg}, nil
}
