package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/beaconhq/beacon/cluster"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// join enters a running cluster through one of its client URLs: as a
// learner that catches up and is then promoted, or, for role auto when the
// cluster already has enough voters, as a proxy.
func join(ctx context.Context, o Options) (*Node, error) {
	ctx, cancel := context.WithTimeout(ctx, o.JoinTimeout)
	defer cancel()

	cli, err := reachCluster(ctx, o, o.Join)
	if err != nil {
		return nil, err
	}
	defer cli.Close()

	w := &downWait{lg: o.Logger}
	for {
		var n *Node
		err = cluster.WithFencedMembershipLock(ctx, cli, o.Namespace, func(lctx context.Context) error {
			var err error
			n, err = joinLocked(lctx, o, cli, w)
			return err
		})
		var down *votersDown
		if !errors.As(err, &down) {
			if err != nil {
				return nil, err
			}
			return n, nil
		}
		// etcd adds no member while a voter is down. Wait for it to come
		// back or be removed without the membership lock, which the
		// removal (beacon force-leave) takes.
		if err := w.wait(ctx, o, cli, down); err != nil {
			return nil, err
		}
	}
}

// votersDown: etcd refused to add this host (ErrUnhealthy) and these
// voters do not answer.
type votersDown struct {
	names []string
	err   error // etcd's refusal
}

func (e *votersDown) Error() string {
	return fmt.Sprintf("%v: %s unreachable", e.err, strings.Join(e.names, ", "))
}

// fix is the command line (or lines) that removes the down voters.
func (e *votersDown) fix() string {
	var fixes []string
	for _, n := range e.names {
		fixes = append(fixes, "`beacon force-leave "+n+"`")
	}
	return strings.Join(fixes, ", ")
}

// downWait tells, once per set of down voters, that a join waits for them
// and how to end the wait.
type downWait struct {
	lg     *zap.Logger
	warned string // the set of names last warned about
	quiet  bool   // the transient ErrUnhealthy has been told once
}

// unhealthy is told of etcd's ErrUnhealthy to an add: it returns a
// *votersDown when some voters do not answer; otherwise (right after a
// member started, it has not been connected long enough) nil: retry.
func (w *downWait) unhealthy(ctx context.Context, cli *clientv3.Client, err error) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	names, perr := cluster.DownVoters(pctx, cli)
	cancel()
	if perr == nil && len(names) > 0 {
		return &votersDown{names: names, err: err}
	}
	if !w.quiet {
		w.quiet = true
		w.lg.Info("cluster not ready for a new member yet (its voters have been connected only briefly); retrying", zap.Error(err))
	} else {
		w.lg.Debug("cluster not ready for a new member yet; retrying", zap.Error(err))
	}
	return nil
}

// wait waits, holding no lock, until none of the voters of down is down
// any more (back, or removed), or ctx ends.
func (w *downWait) wait(ctx context.Context, o Options, cli *clientv3.Client, down *votersDown) error {
	for {
		if key := strings.Join(down.names, ","); key != w.warned {
			w.warned = key
			w.lg.Warn(fmt.Sprintf("cannot join yet: voter(s) %s do not answer, and etcd adds no member while one is listed; waiting until they are back or removed: if a host is gone for good, run %s on any live agent",
				strings.Join(down.names, ", "), down.fix()),
				zap.Strings("down", down.names), zap.Error(down.err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("adding %s as a learner: %v: voter(s) %s still do not answer; if gone for good, run %s on a live agent, then start this host again",
				o.Name, ctx.Err(), strings.Join(down.names, ", "), down.fix())
		case <-time.After(time.Second):
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		names, err := cluster.DownVoters(pctx, cli)
		cancel()
		if err != nil {
			continue // the cluster did not answer; ctx bounds the wait
		}
		if len(names) == 0 {
			return nil
		}
		down.names = names
	}
}

// joinLocked does the join while holding the membership lock. ctx ends
// if the lock is lost; each membership change passes the lock's fence
// first (cluster.FenceMembershipChange) and goes with ctx. Only the undo
// of its own learner goes whatever became of the lock: that learner would
// otherwise block every other host's join.
func joinLocked(ctx context.Context, o Options, cli *clientv3.Client, w *downWait) (*Node, error) {
	members, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: listing members: %v", ErrUnreachable, err)
	}
	// Clear what an interrupted run of this host left before counting, so
	// its own dead entry neither counts as a voter nor blocks the join.
	if err := clearStaleSelf(ctx, cli, o, members.Members); err != nil {
		return nil, err
	}
	// A running agent of this name, a proxy or external one included, keeps
	// it: two agents of one name would share (and take down) one node
	// record. Under the lock, a member joining at the same time is listed.
	if err := cluster.CheckNameFree(ctx, cli, o.Namespace, cluster.NodeInfo{Name: o.Name, ClientURL: o.ClientURL, PeerURL: o.PeerURL}); err != nil {
		return nil, err
	}
	if o.Role == cluster.RoleAuto {
		voters := 0
		for _, m := range members.Members {
			if !m.IsLearner && !hasPeerURL(m, o.PeerURL) {
				voters++
			}
		}
		if voters >= o.Voters {
			o.Logger.Info("cluster has enough voters; starting as a proxy",
				zap.Int("voters", voters), zap.Int("wanted", o.Voters))
			return startProxy(ctx, o, cli.Endpoints())
		}
	}

	added, err := addLearner(ctx, cli, o, w)
	if err != nil {
		return nil, err
	}
	id := added.Member.ID
	o.Logger.Info("added as learner", zap.String("member-id", fmt.Sprintf("%x", id)))

	n, err := startLearner(ctx, o, added)
	if err == nil {
		err = promote(ctx, cli, n, id)
	}
	if err != nil && promoted(cli, id) {
		err = nil // the promotion went through though its answer was lost
	}
	if err != nil {
		undoJoin(cli, n, o, id)
		return nil, err
	}
	// The member is in: losing the lock now changes nothing.
	if err := n.connectWithAuth(context.WithoutCancel(ctx), false); err != nil {
		n.Close()
		return nil, err
	}
	// Record the membership now: data without a state file is what an
	// interrupted join leaves, and is discarded on the next start.
	if err := n.saveState(context.WithoutCancel(ctx)); err != nil {
		o.Logger.Warn("could not record cluster state in the data dir", zap.Error(err))
	}
	return n, nil
}

// promoted asks whether member id is a voter.
func promoted(cli *clientv3.Client, id uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return false
	}
	for _, m := range ml.Members {
		if m.ID == id {
			return !m.IsLearner
		}
	}
	return false
}

// undoJoin removes a learner that never got in, so it does not linger in
// the member list (etcd admits one learner at a time), and deletes its
// data only once the cluster no longer lists it.
func undoJoin(cli *clientv3.Client, n *Node, o Options, id uint64) {
	if n != nil {
		n.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := cli.MemberRemove(ctx, id)
		if err == nil || errors.Is(err, rpctypes.ErrMemberNotFound) {
			_ = removeEtcdData(o.DataDir)
			return
		}
		select {
		case <-ctx.Done():
			o.Logger.Warn("could not remove the learner of a failed join; the next start removes it",
				zap.String("member-id", fmt.Sprintf("%x", id)), zap.Error(err))
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func hasPeerURL(m *etcdserverpb.Member, u string) bool {
	for _, p := range m.PeerURLs {
		if p == u {
			return true
		}
	}
	return false
}

// reachCluster connects to the given client URLs and learns every member's.
// With etcd auth it is root's: a join adds and promotes a member.
func reachCluster(ctx context.Context, o Options, urls []string) (*clientv3.Client, error) {
	cli, err := newClientAs(o, urls, 0, asRoot)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, strings.Join(urls, ","), err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cli.Sync(sctx); err != nil {
		cli.Close()
		if terr := tlsRefusal(ctx, o.TLS, urls); terr != nil {
			err = terr
		}
		return nil, fmt.Errorf("%w at %s: %v; check --join", ErrUnreachable, strings.Join(urls, ","), err)
	}
	return cli, nil
}

// clearStaleSelf removes what an earlier, interrupted join of this host left
// behind (a learner or an unstarted member with this peer URL), and refuses
// when the name or peer URL belongs to a live voter.
func clearStaleSelf(ctx context.Context, cli *clientv3.Client, o Options, members []*etcdserverpb.Member) error {
	for _, m := range members {
		mine := hasPeerURL(m, o.PeerURL)
		switch {
		case mine && (m.IsLearner || m.Name == ""):
			o.Logger.Info("removing the learner left by an interrupted join", zap.String("member-id", fmt.Sprintf("%x", m.ID)))
			if err := cluster.FenceMembershipChange(ctx); err != nil {
				return err
			}
			if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
				return fmt.Errorf("removing stale learner %x: %v", m.ID, err)
			}
		case mine:
			return fmt.Errorf("%w: voter %s (%x) already has peer URL %s; if this host lost its data, remove that member first (beacon leave on it, or beacon force-leave %x)",
				ErrPeerURLTaken, m.Name, m.ID, o.PeerURL, m.ID)
		case m.Name == o.Name:
			return fmt.Errorf("%w: member %x is already named %s with peer URL %s; choose another --name",
				ErrNameTaken, m.ID, o.Name, strings.Join(m.PeerURLs, ","))
		}
	}
	return nil
}

// addLearner adds this host as a learner. etcd refuses membership changes
// (ErrUnhealthy) until every voter has been connected for a few seconds,
// as right after a cluster starts or a member restarts; that passes, so it
// is retried until the join's deadline. While a voter is down it does not
// pass: addLearner returns a *votersDown naming them, so that the join
// waits for them without the membership lock.
func addLearner(ctx context.Context, cli *clientv3.Client, o Options, w *downWait) (*clientv3.MemberAddResponse, error) {
	backoff := 100 * time.Millisecond
	for {
		if err := cluster.FenceMembershipChange(ctx); err != nil {
			return nil, fmt.Errorf("adding %s as a learner: %w", o.Name, err)
		}
		added, err := cli.MemberAddAsLearner(ctx, []string{o.PeerURL})
		if err == nil {
			return added, nil
		}
		if errors.Is(err, rpctypes.ErrTooManyLearners) {
			return nil, fmt.Errorf("adding %s as a learner: %v: another host's join is in progress or was interrupted (%s); finish or remove it (beacon force-leave with its hex id)",
				o.Name, err, learners(ctx, cli))
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) {
			return nil, fmt.Errorf("adding %s as a learner: %v", o.Name, err)
		}
		if down := w.unhealthy(ctx, cli, err); down != nil {
			return nil, down
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("adding %s as a learner: %v (last: %v)", o.Name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

func learners(ctx context.Context, cli *clientv3.Client) string {
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return "unknown learner"
	}
	var out []string
	for _, m := range ml.Members {
		if m.IsLearner {
			out = append(out, fmt.Sprintf("learner %x at %s", m.ID, strings.Join(m.PeerURLs, ",")))
		}
	}
	return strings.Join(out, "; ")
}

// startLearner starts the embedded member with the member list etcd
// returned, as `etcdctl member add` prints it.
func startLearner(ctx context.Context, o Options, added *clientv3.MemberAddResponse) (*Node, error) {
	var initial []string
	for _, m := range added.Members {
		name := m.Name
		if m.ID == added.Member.ID {
			name = o.Name
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	lg, cause := newStopCause(o.Logger.Named("etcd"))
	cfg, err := etcdConfig(o, lg)
	if err != nil {
		return nil, err
	}
	cfg.InitialCluster = strings.Join(initial, ",")
	cfg.ClusterState = embed.ClusterStateFlagExisting
	n, err := startEtcd(o, cfg, cause)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// promote retries until the learner has caught up with the leader and etcd
// lets it vote.
func promote(ctx context.Context, cli *clientv3.Client, n *Node, id uint64) error {
	backoff := 50 * time.Millisecond
	for {
		if err := cluster.FenceMembershipChange(ctx); err != nil {
			return fmt.Errorf("promoting %s to voter: %w", n.opts.Name, err)
		}
		_, err := cli.MemberPromote(ctx, id)
		if err == nil {
			n.opts.Logger.Info("promoted to voter", zap.String("member-id", fmt.Sprintf("%x", id)))
			return nil
		}
		if !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) && !errors.Is(err, rpctypes.ErrUnhealthy) {
			return fmt.Errorf("promoting %s to voter: %v", n.opts.Name, err)
		}
		select {
		case <-n.done:
			return n.Err()
		case <-ctx.Done():
			return fmt.Errorf("promoting %s to voter: the learner did not catch up in time: %v", n.opts.Name, ctx.Err())
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}
