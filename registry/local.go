package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beaconhq/beacon/internal/rpcerr"

	"github.com/beaconhq/beacon/dataquota"
	"github.com/beaconhq/beacon/healthcheck"
	"github.com/beaconhq/beacon/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Named errors of the registry, each with its gRPC code.
var (
	ErrNotFound      = rpcerr.NewNamed(codes.NotFound, "not found")
	ErrAlreadyExists = rpcerr.NewNamed(codes.AlreadyExists, "already exists")
	ErrNoTTLCheck    = rpcerr.NewNamed(codes.FailedPrecondition, "the instance has no TTL check")
	// ErrStopping: the agent is shutting down and takes no more changes;
	// what it keeps in its data dir stays as it was.
	ErrStopping = rpcerr.NewNamed(codes.Unavailable, "the agent is stopping")
)

// Registration is an instance with its check and owner, as this agent
// keeps it.
type Registration struct {
	Instance Instance               `json:"instance"`
	Check    healthcheck.Definition `json:"check"`
	Owner    Owner                  `json:"owner"`
}

type registration struct {
	Registration
	sess *session.Session
	mon  *healthcheck.Monitor
	// client: registered by an API call. The agent's later writes of it
	// (status changes, anti-entropy) are the client's too, judged at the
	// data quota's client line (dataquota.ForClient): a client flipping
	// a TTL check's status rewrites the whole instance each time.
	client bool
}

// writeContext is ctx for a write of r.
func (r *registration) writeContext(ctx context.Context) context.Context {
	if r.client {
		return dataquota.ForClient(ctx)
	}
	return ctx
}

// statusContext is ctx for a status write of r, from status was to
// status now (was: etcd's copy as the catalog has it, "" without one). A
// change to critical is the agent's own, whoever registered r: past the
// client line DNS must still stop answering an instance that failed its
// check. Any other write is r's registrant's, critical to critical (a new
// output) included: past the line a client's writes are refused, etcd's
// copy stays critical, and a client flipping its heartbeat cannot make
// the agent rewrite the instance more than once.
func (r *registration) statusContext(ctx context.Context, was, now string) context.Context {
	if now == StatusCritical && was != StatusCritical {
		return ctx
	}
	return r.writeContext(ctx)
}

// Local is this agent's own registrations: the truth for its node. It
// writes them to etcd under their owner's lease, runs their checks,
// keeps the agent-owned ones in the data dir, and puts back whatever etcd
// lost (anti-entropy).
type Local struct {
	cli       *clientv3.Client
	namespace string
	node      string
	nodeAddr  string
	store     *fileStore
	sessions  *session.Manager
	agentSess *session.Session
	catalog   *Catalog
	lg        *zap.Logger

	mu     sync.Mutex
	regs   map[string]*registration // by service/id
	hooked map[string]bool          // sessions whose end we watch
	kick   chan struct{}
	closed bool // by Close: no more changes, nothing more saved

	repairs atomic.Uint64 // beacon_antientropy_repairs_total

	// keyLocks serialise the etcd writes of one instance key (register,
	// status, anti-entropy, deregister), so that none of them can bring
	// back a deregistered key or roll back a newer status. Striped, so
	// that different keys are written concurrently.
	keyLocks [64]sync.Mutex

	batch createBatcher

	antiEntropyEvery time.Duration

	// journal keeps the agent-owned registrations in the data dir
	// (persist.go).
	journal journal

	// afterPublish, which only a test sets before it registers, runs
	// between a registration's publication and the start of its monitor:
	// the window in which its session may end.
	afterPublish func(*registration)
}

func (l *Local) keyLock(k string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(k))
	return &l.keyLocks[h.Sum32()%uint32(len(l.keyLocks))]
}

// LocalConfig is what Local needs from the agent.
type LocalConfig struct {
	Client    *clientv3.Client
	Namespace string
	Node      string
	NodeAddr  string
	DataDir   string
	Sessions  *session.Manager
	// AgentSession holds the agent-owned and config-owned registrations.
	AgentSession *session.Session
	Catalog      *Catalog
}

// NewLocal returns the registrations of this agent, loading the ones it
// kept in its data dir.
func NewLocal(ctx context.Context, c LocalConfig, opts ...Option) (*Local, error) {
	o := optionsOf(opts)
	l := &Local{
		cli: c.Client, namespace: c.Namespace, node: c.Node, nodeAddr: c.NodeAddr,
		store: &fileStore{dir: c.DataDir}, sessions: c.Sessions, agentSess: c.AgentSession,
		catalog: c.Catalog, lg: o.lg,
		regs: map[string]*registration{}, hooked: map[string]bool{},
		kick: make(chan struct{}, 1),

		antiEntropyEvery: o.antiEntropyEvery,
	}
	l.batch.cli = c.Client
	l.agentSess.OnLeaseChange(func(_, _ clientv3.LeaseID) { l.Kick() })
	kept, err := l.loadKept()
	if err != nil {
		return nil, err
	}
	for _, r := range kept {
		l.restore(r)
	}
	return l, nil
}

// restore takes back a registration kept in the data dir with its last
// known status; anti-entropy writes it to etcd as soon as etcd answers, so
// a restart while etcd is unreachable loses nothing.
func (l *Local) restore(kept Registration) {
	in, check := kept.Instance, kept.Check
	if err := in.Normalize(l.node, l.nodeAddr); err != nil {
		l.lg.Warn("dropping an invalid kept registration", zap.String("service", in.Service), zap.Error(err))
		return
	}
	if err := check.Normalize(); err != nil {
		l.lg.Warn("dropping a kept registration with an invalid check", zap.String("service", in.Service), zap.Error(err))
		return
	}
	in.Status, in.Output = kept.Instance.Status, kept.Instance.Output
	if in.Status == "" {
		in.Status = StatusCritical
	}
	r := &registration{Registration: Registration{Instance: in, Check: check, Owner: OwnerAgent}, sess: l.agentSess}
	l.mu.Lock()
	l.regs[regKey(in.Service, in.ID)] = r
	l.mu.Unlock()
	l.startMonitor(r)
	l.Kick()
}

func regKey(service, id string) string { return service + "/" + id }

// Register adds or updates an instance on this node. owner is OwnerAgent,
// OwnerConfig, or SessionOwner of a session open on this agent.
// Re-registering an instance of the same owner updates it; another
// owner's is refused.
func (l *Local) Register(ctx context.Context, in Instance, check healthcheck.Definition, owner Owner) (*Instance, int64, error) {
	if err := in.Normalize(l.node, l.nodeAddr); err != nil {
		return nil, 0, err
	}
	if err := check.Normalize(); err != nil {
		var fe *healthcheck.FieldError
		if errors.As(err, &fe) {
			return nil, 0, &FieldError{Field: "check." + fe.Field, Msg: fe.Msg}
		}
		return nil, 0, &FieldError{Field: "check", Msg: err.Error()}
	}
	sess := l.agentSess
	if id, ok := owner.Session(); ok {
		s, err := l.sessions.Get(id)
		if err != nil {
			return nil, 0, errUnknownSession
		}
		sess = s
	}
	k := regKey(in.Service, in.ID)

	mu := l.keyLock(k)
	mu.Lock()
	r, old, rev, err := l.registerLocked(ctx, k, in, check, owner, sess)
	mu.Unlock()
	// Stop the replaced monitor only now: its last notify may be waiting
	// for the key's lock.
	if old != nil && old.mon != nil {
		old.mon.Stop()
	}
	if err != nil {
		return nil, 0, err
	}
	if owner == OwnerAgent {
		l.persist()
	}
	out := r.Instance
	return &out, rev, nil
}

func (l *Local) registerLocked(ctx context.Context, k string, in Instance, check healthcheck.Definition, owner Owner, sess *session.Session) (r, old *registration, rev int64, err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, 0, ErrStopping
	}
	old = l.regs[k]
	if old != nil && old.Owner != owner {
		l.mu.Unlock()
		return nil, nil, 0, rpcerr.Wrapf(ErrAlreadyExists, "id: instance %s of service %s is already registered on this node %s", in.ID, in.Service, ownerText(old.Owner, owner))
	}
	in.Status, in.Output = StatusPassing, ""
	if check.Kind() != "" {
		in.Status, in.Output = StatusCritical, "no check result yet"
		if old != nil && old.Check.Kind() == check.Kind() {
			in.Status, in.Output = old.Instance.Status, old.Instance.Output
		}
	}
	l.mu.Unlock()

	if rev, err = l.writeNew(ctx, in, sess.Lease, old == nil); err != nil {
		return nil, nil, 0, err
	}
	r = &registration{Registration: Registration{Instance: in, Check: check, Owner: owner}, sess: sess, client: dataquota.FromClient(ctx)}
	l.mu.Lock()
	if l.closed { // Close came while etcd was written: the lease ends it
		l.mu.Unlock()
		return nil, nil, 0, ErrStopping
	}
	l.regs[k] = r
	_, sessionOwned := owner.Session()
	watchSession := sessionOwned && !l.hooked[sess.ID]
	if watchSession {
		l.hooked[sess.ID] = true
	}
	l.mu.Unlock()
	if l.afterPublish != nil {
		l.afterPublish(r)
	}
	l.startMonitor(r)
	if watchSession {
		sid := sess.ID
		sess.OnClose(func() { l.dropSession(sid) })
		sess.OnLeaseChange(func(_, _ clientv3.LeaseID) { l.Kick() })
	}
	return r, old, rev, nil
}

// currentLocked says whether r is still the registration of key k and
// the agent takes changes: what every write for r checks under the key's
// lock before it goes to etcd. The caller holds l.mu.
func (l *Local) currentLocked(k string, r *registration) bool {
	return !l.closed && l.regs[k] == r
}

// startMonitor runs r's check, if it has one. Its results reach etcd
// through setStatus, which ignores them once r is no longer registered.
func (l *Local) startMonitor(r *registration) {
	if r.Check.Kind() == "" {
		return
	}
	mon := healthcheck.Start(r.Check, healthcheck.Result{Status: r.Instance.Status, Output: r.Instance.Output},
		func(res healthcheck.Result) { l.setStatus(r, res) },
		func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if l.deregister(ctx, r) {
				l.lg.Info("deregistered an instance critical for too long",
					zap.String("service", r.Instance.Service), zap.String("id", r.Instance.ID))
			}
		})
	// r was published before its monitor started: if it went meanwhile
	// (its session ended, the agent closed), nobody else will stop this.
	l.mu.Lock()
	r.mon = mon
	gone := !l.currentLocked(regKey(r.Instance.Service, r.Instance.ID), r)
	l.mu.Unlock()
	if gone {
		mon.Stop()
	}
}

// writeNew is write for a registration: one this agent does not have yet
// goes through the create batcher first (the common case, a new key, in a
// group commit); anything else takes write's checked path.
func (l *Local) writeNew(ctx context.Context, in Instance, lease func() clientv3.LeaseID, isNew bool) (int64, error) {
	for {
		rev, err := l.writeOnce(ctx, in, lease(), isNew)
		// A write cut short by a connection that just died has an unknown
		// outcome, and etcd's client rightly does not retry it. Writing an
		// instance again is safe (write takes over this node's own record),
		// so it is retried, on another connection, while the caller waits.
		// Likewise a write under a lease etcd no longer has (it expired
		// during a fault): the session is granting a new one, and the
		// write is retried under it rather than failed as Internal.
		if !(status.Code(err) == codes.Unavailable || leaseGone(err)) || ctx.Err() != nil {
			return rev, err
		}
		isNew = false
		select {
		case <-ctx.Done():
			return rev, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *Local) writeOnce(ctx context.Context, in Instance, lease clientv3.LeaseID, isNew bool) (int64, error) {
	if isNew {
		b, _ := json.Marshal(in)
		rev, created, err := l.batch.create(ctx, Key(l.namespace, in.Service, in.ID), string(b), lease)
		if err != nil || created {
			return rev, err
		}
	}
	return l.write(ctx, in, lease)
}

// write puts the instance under lease. It never takes over an instance
// another node holds; a leftover of this node's (an earlier run's) is
// taken over.
func (l *Local) write(ctx context.Context, in Instance, lease clientv3.LeaseID) (int64, error) {
	b, _ := json.Marshal(in) // strings and ints only
	key := Key(l.namespace, in.Service, in.ID)
	put := clientv3.OpPut(key, string(b), clientv3.WithLease(lease))
	resp, err := l.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(put).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	var cur Instance
	if len(kvs) == 1 && json.Unmarshal(kvs[0].Value, &cur) == nil && cur.Node != "" && cur.Node != l.node {
		return 0, rpcerr.Wrapf(ErrAlreadyExists, "id: instance %s of service %s is already registered by node %s", in.ID, in.Service, cur.Node)
	}
	// Ours (or not an instance at all): replace it, unless it changed
	// since we looked.
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", 0)
	if len(kvs) == 1 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision)
	}
	presp, err := l.cli.Txn(ctx).If(cmp).Then(put).Commit()
	if err != nil {
		return 0, err
	}
	if !presp.Succeeded {
		return 0, rpcerr.Wrapf(ErrAlreadyExists, "id: instance %s of service %s changed while being registered; try again", in.ID, in.Service)
	}
	return presp.Header.Revision, nil
}

// setStatus records a check result and writes it, unless the instance was
// deregistered meanwhile (then nothing may bring its key back).
func (l *Local) setStatus(r *registration, res healthcheck.Result) {
	k := regKey(r.Instance.Service, r.Instance.ID)
	mu := l.keyLock(k)
	mu.Lock()
	defer mu.Unlock()
	l.mu.Lock()
	if !l.currentLocked(k, r) {
		l.mu.Unlock()
		return
	}
	r.Instance.Status, r.Instance.Output = res.Status, res.Output
	in := r.Instance
	lease := r.sess.Lease()
	l.mu.Unlock()

	b, _ := json.Marshal(in)
	key := Key(l.namespace, in.Service, in.ID)
	was := ""
	if cur, ok := l.catalog.Instance(in.Service, in.ID); ok {
		was = cur.Status
	}
	ctx, cancel := context.WithTimeout(r.statusContext(context.Background(), was, in.Status), 5*time.Second)
	defer cancel()
	_, err := l.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
		Then(clientv3.OpPut(key, string(b), clientv3.WithLease(lease))).Commit()
	if err != nil {
		l.lg.Debug("status write failed; anti-entropy will retry", zap.String("key", key), zap.Error(err))
		l.Kick()
	}
	if r.Owner == OwnerAgent {
		l.persist()
	}
}

// resolveLocked finds a registration by service and id; service may be
// empty when the id is registered under one service only.
func (l *Local) resolveLocked(service, id string) (string, *registration, error) {
	service, id = strings.ToLower(service), strings.ToLower(id)
	if service != "" {
		k := regKey(service, id)
		if r := l.regs[k]; r != nil {
			return k, r, nil
		}
		return "", nil, rpcerr.Wrapf(ErrNotFound, "no instance %s of service %s is registered on this agent", id, service)
	}
	var found []string
	for k, r := range l.regs {
		if r.Instance.ID == id {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return "", nil, rpcerr.Wrapf(ErrNotFound, "no instance %s is registered on this agent", id)
	case 1:
		return found[0], l.regs[found[0]], nil
	}
	return "", nil, &FieldError{Field: "service", Msg: fmt.Sprintf("instance id %s is registered under several services (%s); name the service", id, strings.Join(found, ", "))}
}

// Deregister removes an instance registered on this agent; service may be
// empty when the id is unambiguous.
func (l *Local) Deregister(ctx context.Context, service, id string) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrStopping
	}
	_, r, err := l.resolveLocked(service, id)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if !l.deregister(ctx, r) {
		return rpcerr.Wrapf(ErrNotFound, "instance %s of service %s was deregistered meanwhile", r.Instance.ID, r.Instance.Service)
	}
	return nil
}

// deregister removes r if it is still the registration of its key, and
// says whether it did.
func (l *Local) deregister(ctx context.Context, r *registration) bool {
	k := regKey(r.Instance.Service, r.Instance.ID)
	mu := l.keyLock(k)
	mu.Lock()
	l.mu.Lock()
	if !l.currentLocked(k, r) {
		l.mu.Unlock()
		mu.Unlock()
		return false
	}
	delete(l.regs, k)
	mon := r.mon
	l.mu.Unlock()
	if _, err := l.cli.Delete(ctx, Key(l.namespace, r.Instance.Service, r.Instance.ID)); err != nil {
		l.Kick() // anti-entropy removes it once etcd answers
	}
	mu.Unlock()
	if mon != nil {
		mon.Stop()
	}
	if r.Owner == OwnerAgent {
		l.persist()
	}
	return true
}

// Heartbeat reports a TTL check's status, if caller (an owner, see
// ownerOf) may.
func (l *Local) Heartbeat(caller Owner, service, id, status, output string) error {
	l.mu.Lock()
	_, r, err := l.resolveLocked(service, id)
	if err == nil {
		err = mayChange(r, caller, "heartbeat")
	}
	var mon *healthcheck.Monitor
	if err == nil {
		mon = r.mon
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if mon == nil || r.Check.Kind() != "ttl" {
		return rpcerr.Wrapf(ErrNoTTLCheck, "instance %s of service %s has no TTL check", id, service)
	}
	if err := mon.Heartbeat(status, output); err != nil {
		return &FieldError{Field: "status", Msg: err.Error()}
	}
	return nil
}

// Registrations lists this agent's registrations.
func (l *Local) Registrations() []Registration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Registration, 0, len(l.regs))
	for _, r := range l.regs {
		out = append(out, r.Registration)
	}
	return out
}

// dropSession forgets a closed session's registrations; revoking its lease
// already removed them from etcd.
func (l *Local) dropSession(id string) {
	owner := SessionOwner(id)
	l.mu.Lock()
	var stop []*healthcheck.Monitor
	for k, r := range l.regs {
		if r.Owner == owner {
			delete(l.regs, k)
			if r.mon != nil {
				stop = append(stop, r.mon)
			}
		}
	}
	delete(l.hooked, id)
	l.mu.Unlock()
	for _, m := range stop {
		m.Stop()
	}
}

// Close stops every check and takes no more changes (ErrStopping). The
// registrations stay in etcd until their leases end, and in the data dir
// as they were.
func (l *Local) Close() {
	l.mu.Lock()
	l.closed = true
	var stop []*healthcheck.Monitor
	for _, r := range l.regs {
		if r.mon != nil {
			stop = append(stop, r.mon)
		}
	}
	// regs stay as they are: a Register that got in before Close may
	// still save them all to the data dir.
	l.mu.Unlock()
	for _, m := range stop {
		m.Stop()
	}
}

// leaseGone: etcd refused a write under a lease it no longer has.
func leaseGone(err error) bool {
	return err != nil && (errors.Is(err, rpctypes.ErrLeaseNotFound) || strings.Contains(err.Error(), rpctypes.ErrLeaseNotFound.Error()))
}
