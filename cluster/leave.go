package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// ErrQuorumAtRisk is returned when removing a voter would leave the
// remaining voters without a healthy majority.
var ErrQuorumAtRisk = errors.New("leaving would break quorum")

// refusal explains a refused leave; it answers FAILED_PRECONDITION.
type refusal struct{ msg string }

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Unwrap() error        { return ErrQuorumAtRisk }
func (r *refusal) GRPCCode() codes.Code { return codes.FailedPrecondition }

// CheckLeave says whether member id may leave: a learner always may; a
// voter only when the healthy voters left keep quorum.
func CheckLeave(ctx context.Context, cli *clientv3.Client, id uint64) error {
	_, err := leavePlan(ctx, cli, id)
	return err
}

// RemoveMember removes the member id, but only when CheckLeave allows it.
// A leader hands its leadership to a healthy voter first, so the cluster
// does not wait out an election. Under WithFencedMembershipLock (ctx from
// it), each step first checks that the lock is still held.
func RemoveMember(ctx context.Context, cli *clientv3.Client, id uint64) error {
	plan, err := leavePlan(ctx, cli, id)
	if err != nil {
		return err
	}
	if plan.successor != nil {
		for _, ep := range plan.self.ClientURLs {
			if st, err := cli.Status(ctx, ep); err == nil && st.Leader == id {
				if err := FenceMembershipChange(ctx); err != nil {
					return err
				}
				if _, err := cli.MoveLeader(ctx, plan.successor.ID); err != nil {
					return fmt.Errorf("handing leadership to %s before leaving: %v", plan.successor.Name, err)
				}
			}
			break
		}
	}
	err = removeWhenHealthy(ctx, cli, id)
	if err != nil && plan.successor != nil && goneFrom(ctx, plan.successor, id) {
		// The request went to this member, which stops as soon as it
		// applies its own removal; the answer can be lost on the way.
		return nil
	}
	return err
}

// goneFrom asks another voter whether member id has left its list.
func goneFrom(ctx context.Context, other *etcdserverpb.Member, id uint64) bool {
	cli, err := clientv3.New(clientv3.Config{Endpoints: other.ClientURLs, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return false
	}
	defer cli.Close()
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ml, err := cli.MemberList(lctx)
	if err != nil {
		return false
	}
	for _, m := range ml.Members {
		if m.ID == id {
			return false
		}
	}
	return true
}

// removeWhenHealthy retries etcd's ErrUnhealthy, which it answers to
// membership changes until every voter has been connected for a few
// seconds (right after a start or restart), until ctx ends.
func removeWhenHealthy(ctx context.Context, cli *clientv3.Client, id uint64) error {
	backoff := 100 * time.Millisecond
	for {
		if err := FenceMembershipChange(ctx); err != nil {
			return err
		}
		_, err := cli.MemberRemove(ctx, id)
		if !errors.Is(err, rpctypes.ErrUnhealthy) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

type leave struct {
	self      *etcdserverpb.Member
	successor *etcdserverpb.Member // a healthy voter to lead after self
}

func leavePlan(ctx context.Context, cli *clientv3.Client, id uint64) (*leave, error) {
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	var self *etcdserverpb.Member
	var others []*etcdserverpb.Member
	for _, m := range ml.Members {
		switch {
		case m.ID == id:
			self = m
		case !m.IsLearner:
			others = append(others, m)
		}
	}
	if self == nil {
		return nil, fmt.Errorf("member %x is not in the cluster", id)
	}
	if self.IsLearner {
		return &leave{self: self}, nil
	}
	if len(others) == 0 {
		return nil, &refusal{fmt.Sprintf("refusing to leave: %s is the only voter, and the cluster would end with it", self.Name)}
	}
	healthy, down := probeVoters(ctx, cli, others)
	need := len(others)/2 + 1
	if len(healthy) < need {
		return nil, &refusal{fmt.Sprintf("refusing to leave: %d voters would remain and %d of them are unreachable (%s); quorum needs %d healthy; bring them back first",
			len(others), len(down), strings.Join(down, ", "), need)}
	}
	return &leave{self: self, successor: healthy[0]}, nil
}

// probeVoters asks each voter for its status; those that answer without
// errors are healthy.
func probeVoters(ctx context.Context, cli *clientv3.Client, voters []*etcdserverpb.Member) (healthy []*etcdserverpb.Member, down []string) {
	ok := make([]bool, len(voters))
	var wg sync.WaitGroup
	for i, m := range voters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, ep := range m.ClientURLs {
				sctx, cancel := context.WithTimeout(ctx, statusTimeout)
				st, err := cli.Status(sctx, ep)
				cancel()
				if err == nil && len(st.Errors) == 0 && st.Leader != 0 {
					ok[i] = true
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, m := range voters {
		if ok[i] {
			healthy = append(healthy, m)
		} else {
			name := m.Name
			if name == "" {
				name = fmt.Sprintf("%x", m.ID)
			}
			down = append(down, name)
		}
	}
	return healthy, down
}
