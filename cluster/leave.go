package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"
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
//
// With TLS on, give WithTLS, and with etcd's auth on, WithUser: when the
// removal's answer is lost, another voter is asked, over a client of its
// own.
func RemoveMember(ctx context.Context, cli *clientv3.Client, id uint64, opts ...RemoveOption) error {
	var o removeOptions
	for _, opt := range opts {
		opt(&o)
	}
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
	if err != nil && plan.successor != nil && goneFromAs(ctx, plan.successor, id, o) {
		// The request went to this member, which stops as soon as it
		// applies its own removal; the answer can be lost on the way.
		return nil
	}
	return err
}

// RemoveOption configures RemoveMember.
type RemoveOption func(*removeOptions)

type removeOptions struct {
	tls            *tls.Config
	user, password string
}

// WithTLS: the members' client URLs are https, dialed with c.
func WithTLS(c *tls.Config) RemoveOption { return func(o *removeOptions) { o.tls = c } }

// WithUser: etcd's auth is on, and another voter is asked as this etcd
// user (a linearizable member list is refused to a client without one).
func WithUser(name, password string) RemoveOption {
	return func(o *removeOptions) { o.user, o.password = name, password }
}

// goneFrom asks another voter whether member id has left its list.
func goneFrom(ctx context.Context, other *etcdserverpb.Member, id uint64, tc *tls.Config) bool {
	return goneFromAs(ctx, other, id, removeOptions{tls: tc})
}

// goneFromAs is goneFrom with RemoveMember's options (TLS, etcd user).
func goneFromAs(ctx context.Context, other *etcdserverpb.Member, id uint64, o removeOptions) bool {
	cli, err := clientv3.New(clientv3.Config{Endpoints: other.ClientURLs, TLS: o.tls, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		Username: o.user, Password: o.password})
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

// removeWhenHealthy retries etcd's ErrUnhealthy and
// ErrMemberNotEnoughStarted, which it answers to membership changes until
// the voters have been connected for a few seconds (right after a start or
// restart), until ctx ends.
func removeWhenHealthy(ctx context.Context, cli *clientv3.Client, id uint64) error {
	backoff := 100 * time.Millisecond
	for {
		if err := FenceMembershipChange(ctx); err != nil {
			return err
		}
		_, err := cli.MemberRemove(ctx, id)
		if !errors.Is(err, rpctypes.ErrUnhealthy) && !errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) {
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
	healthy, _, down = probeVoterStatus(ctx, cli, voters)
	return healthy, down
}

// probeVoterStatus is probeVoters with the healthy voters' statuses
// (leaders[i] is the leader healthy[i] follows).
func probeVoterStatus(ctx context.Context, cli *clientv3.Client, voters []*etcdserverpb.Member) (healthy []*etcdserverpb.Member, leaders []uint64, down []string) {
	sts := make([]*clientv3.StatusResponse, len(voters))
	var wg sync.WaitGroup
	for i, m := range voters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i], _ = probeMember(ctx, cli, m, statusTimeout)
		}()
	}
	wg.Wait()
	for i, m := range voters {
		if sts[i] != nil {
			healthy = append(healthy, m)
			leaders = append(leaders, sts[i].Leader)
		} else {
			down = append(down, memberLabel(m))
		}
	}
	return healthy, leaders, down
}

// probeMember asks member m, at each of its client URLs in turn, for its
// status, each within timeout. It is healthy when one answers without
// errors and knows a leader; the status is that answer. Otherwise the
// error says why not (the last URL's).
func probeMember(ctx context.Context, cli *clientv3.Client, m *etcdserverpb.Member, timeout time.Duration) (*clientv3.StatusResponse, error) {
	err := errors.New("it has no client URL")
	for _, ep := range m.ClientURLs {
		sctx, cancel := context.WithTimeout(ctx, timeout)
		st, serr := cli.Status(sctx, ep)
		cancel()
		switch {
		case serr != nil:
			err = fmt.Errorf("no answer at %s: %v", ep, serr)
		case len(st.Errors) > 0:
			err = fmt.Errorf("answers at %s with errors: %s", ep, strings.Join(st.Errors, "; "))
		case st.Leader == 0:
			err = fmt.Errorf("answers at %s but knows no leader", ep)
		default:
			return st, nil
		}
	}
	return nil, err
}

// memberLabel is a member's name, or its hex id if it never started.
func memberLabel(m *etcdserverpb.Member) string {
	if m.Name == "" {
		return fmt.Sprintf("%x", m.ID)
	}
	return m.Name
}

// DownVoters names the voters (by name, or hex id for one that never
// started) that do not answer a status request healthy, as a joining
// host sees them: while one is listed, etcd adds no member.
func DownVoters(ctx context.Context, cli *clientv3.Client) ([]string, error) {
	ml, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	var voters []*etcdserverpb.Member
	for _, m := range ml.Members {
		if !m.IsLearner {
			voters = append(voters, m)
		}
	}
	_, down := probeVoters(ctx, cli, voters)
	return down, nil
}

// Errors of removeDeadMember (beacon force-leave), each answering its gRPC
// code; the messages they carry name the member and what to do.
var (
	// ErrNoSuchMember: no etcd member has that name or id.
	ErrNoSuchMember = rpcerr.NewNamed(codes.NotFound, "no such member")
	// ErrMemberAlive: the member answers; it should leave by itself.
	ErrMemberAlive = rpcerr.NewNamed(codes.FailedPrecondition, "the member answers")
	// ErrNotAMember: a proxy or external agent, which has no etcd member.
	ErrNotAMember = rpcerr.NewNamed(codes.FailedPrecondition, "not an etcd member")
	// ErrNoQuorum: the voters that would remain lack a healthy majority.
	ErrNoQuorum = rpcerr.NewNamed(codes.Unavailable, "no quorum to remove the member")
	// ErrBadMemberName: no name, or the name of the agent asked.
	ErrBadMemberName = rpcerr.NewNamed(codes.InvalidArgument, "bad member name")
)

// targetTimeout bounds asking the member to remove whether it answers; it
// is longer than statusTimeout so that a live member under load is not
// taken for dead.
const targetTimeout = 2 * time.Second

// deadMember is the member removeDeadMember removed.
type deadMember struct {
	Name   string // empty for a member that never started
	ID     uint64
	Role   Role   // voter or learner
	Why    string // why it was taken for dead: its probe's answer
	Voters []string
}

// removeDeadMember removes the etcd member called name (or whose hex id is
// name) for good: the force-leave of a host that will not come back. It
// takes the membership lock (fenced, like every membership change) and
// removes the member only when
//
//   - it is a voter or a learner (a proxy's record expires by itself:
//     ErrNotAMember; an unknown name: ErrNoSuchMember);
//   - it does not answer healthy (a live member leaves with `beacon leave`
//     on its own agent: ErrMemberAlive);
//   - the voters that remain hold a healthy majority, as CheckLeave counts
//     it, and do not still follow the member as their leader (ErrNoQuorum).
//
// The same checks run before the lock is taken, so that a refusal is quick
// and a cluster without quorum answers ErrNoQuorum instead of a wait for a
// lock no one can grant, and again under it.
func removeDeadMember(ctx context.Context, cli *clientv3.Client, namespace, name string) (*deadMember, error) {
	if strings.TrimSpace(name) == "" || strings.ContainsAny(name, " \t\n") {
		return nil, rpcerr.Wrapf(ErrBadMemberName, "force-leave needs a member's name or hex id, not %q", name)
	}
	if _, err := deadMemberPlan(ctx, cli, namespace, name, true); err != nil {
		return nil, err
	}
	var out *deadMember
	err := WithFencedMembershipLock(ctx, cli, namespace, func(ctx context.Context) error {
		p, err := deadMemberPlan(ctx, cli, namespace, name, false)
		if err != nil {
			return err
		}
		if err := removeWhenHealthy(ctx, cli, p.ID); err != nil {
			if errors.Is(err, rpctypes.ErrMemberNotFound) {
				return rpcerr.Wrapf(ErrNoSuchMember, "member %s was removed by someone else meanwhile", name)
			}
			return fmt.Errorf("removing %s: %w", name, err)
		}
		out = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// deadMemberPlan finds the member to force out and checks that it may go.
// serializable: read the member list from the local member (the pre-check
// outside the lock); otherwise a linearizable read.
func deadMemberPlan(ctx context.Context, cli *clientv3.Client, namespace, name string, serializable bool) (*deadMember, error) {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	ml, err := cli.MemberList(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("listing members: %w", err)
	}
	target := findMember(ml.Members, name)
	if target == nil {
		return nil, notAMember(ctx, cli, namespace, name, ml.Members)
	}
	label := memberLabel(target)
	role := RoleVoter
	if target.IsLearner {
		role = RoleLearner
	}
	var others []*etcdserverpb.Member
	for _, m := range ml.Members {
		if m.ID != target.ID && !m.IsLearner {
			others = append(others, m)
		}
	}

	// The member itself and the voters that remain, at once.
	var why error
	var healthy []*etcdserverpb.Member
	var leaders []uint64
	var down []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, why = probeMember(ctx, cli, target, targetTimeout)
	}()
	healthy, leaders, down = probeVoterStatus(ctx, cli, others)
	wg.Wait()

	if why == nil {
		return nil, rpcerr.Wrapf(ErrMemberAlive,
			"refusing to force %s out: it answers at %s; a live member leaves with `beacon leave` on its own agent (force-leave is for a host gone for good)",
			label, strings.Join(target.ClientURLs, ","))
	}
	// Voters in the cluster as it is; the removal must be agreed by a
	// majority of them, which is also a majority of those that remain.
	voters := len(others)
	if role == RoleVoter {
		voters++
	}
	need := voters/2 + 1
	if len(others) == 0 {
		return nil, rpcerr.Wrapf(ErrNoQuorum,
			"cannot force %s out: it is the cluster's only voter, and it does not answer (%v); start it again", label, why)
	}
	if len(healthy) < need {
		return nil, rpcerr.Wrapf(ErrNoQuorum,
			"cannot force %s out: %d of the %d voters answer (down: %s), and removing a member needs a healthy majority of %d; bring voters back first",
			label, len(healthy), voters, strings.Join(append([]string{label}, down...), ", "), need)
	}
	for _, l := range leaders {
		if l == target.ID {
			return nil, rpcerr.Wrapf(ErrNoQuorum,
				"cannot force %s out yet: it was the leader and the voters left have not elected a new one; retry in a few seconds", label)
		}
	}
	var names []string
	for _, m := range others {
		names = append(names, memberLabel(m))
	}
	sort.Strings(names)
	return &deadMember{Name: target.Name, ID: target.ID, Role: role, Why: why.Error(), Voters: names}, nil
}

// findMember is the member called name, or else the one whose hex id is name.
func findMember(members []*etcdserverpb.Member, name string) *etcdserverpb.Member {
	for _, m := range members {
		if m.Name == name {
			return m
		}
	}
	if id, err := strconv.ParseUint(name, 16, 64); err == nil {
		for _, m := range members {
			if m.ID == id {
				return m
			}
		}
	}
	return nil
}

// notAMember says why name is no etcd member: a proxy or external agent
// (its record is all there is), or nothing known by that name.
func notAMember(ctx context.Context, cli *clientv3.Client, namespace, name string, members []*etcdserverpb.Member) error {
	if nodes, err := listNodes(ctx, cli, namespace); err == nil {
		for _, n := range nodes {
			if n.Name == name && (n.Role == RoleProxy || n.Role == RoleExternal) {
				return rpcerr.Wrapf(ErrNotAMember,
					"%s is a %s, not an etcd member: there is nothing to remove; its node record %s%s expires by itself within node-ttl of its agent stopping",
					name, n.Role, NodesPrefix(namespace), name)
			}
		}
	}
	var names []string
	for _, m := range members {
		names = append(names, memberLabel(m))
	}
	sort.Strings(names)
	return rpcerr.Wrapf(ErrNoSuchMember, "no member named %s in the cluster (members: %s); a proxy that stopped leaves nothing to remove",
		name, strings.Join(names, ", "))
}
