package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/healthcheck"
	"github.com/beaconhq/beacon/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// Owners of a registration besides a session ("session:<id>").
const (
	// OwnerAgent: registered by the CLI or the API without a session;
	// kept in the data dir until deregistered.
	OwnerAgent = "agent"
	// OwnerConfig: a services: block of the agent's config file.
	OwnerConfig = "config"
)

// Named errors of the registry, each with its gRPC code.
var (
	ErrNotFound      = &codedError{codes.NotFound, "not found"}
	ErrAlreadyExists = &codedError{codes.AlreadyExists, "already exists"}
	ErrNoTTLCheck    = &codedError{codes.FailedPrecondition, "the instance has no TTL check"}
)

type codedError struct {
	code codes.Code
	msg  string
}

func (e *codedError) Error() string        { return e.msg }
func (e *codedError) GRPCCode() codes.Code { return e.code }

// wrapf adds specifics to a named error and keeps its code.
func wrapf(base *codedError, format string, args ...any) error {
	return &wrapped{base: base, msg: fmt.Sprintf(format, args...)}
}

type wrapped struct {
	base *codedError
	msg  string
}

func (w *wrapped) Error() string        { return w.msg }
func (w *wrapped) Unwrap() error        { return w.base }
func (w *wrapped) GRPCCode() codes.Code { return w.base.code }

// GRPCCode makes a FieldError answer INVALID_ARGUMENT.
func (e *FieldError) GRPCCode() codes.Code { return codes.InvalidArgument }

// Registration is an instance with its check and owner, as this agent
// keeps it.
type Registration struct {
	Instance Instance               `json:"instance"`
	Check    healthcheck.Definition `json:"check"`
	Owner    string                 `json:"owner"`
}

type registration struct {
	Registration
	sess *session.Session
	mon  *healthcheck.Monitor
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

	mu      sync.Mutex
	regs    map[string]*registration // by service/id
	pending map[string]bool          // being written by Register
	hooked  map[string]bool          // sessions whose end we watch
	kick    chan struct{}
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
	Logger       *zap.Logger
}

// NewLocal returns the registrations of this agent, loading the ones it
// kept in its data dir.
func NewLocal(ctx context.Context, c LocalConfig) (*Local, error) {
	l := &Local{
		cli: c.Client, namespace: c.Namespace, node: c.Node, nodeAddr: c.NodeAddr,
		store: &fileStore{dir: c.DataDir}, sessions: c.Sessions, agentSess: c.AgentSession,
		catalog: c.Catalog, lg: c.Logger,
		regs: map[string]*registration{}, pending: map[string]bool{}, hooked: map[string]bool{},
		kick: make(chan struct{}, 1),
	}
	l.agentSess.OnLeaseChange(func(_, _ clientv3.LeaseID) { l.Kick() })
	kept, err := l.store.load()
	if err != nil {
		return nil, err
	}
	for _, r := range kept {
		if _, _, err := l.Register(ctx, r.Instance, r.Check, OwnerAgent); err != nil {
			l.lg.Warn("could not restore a registration kept in the data dir",
				zap.String("service", r.Instance.Service), zap.String("id", r.Instance.ID), zap.Error(err))
		}
	}
	return l, nil
}

func regKey(service, id string) string { return service + "/" + id }

// Register adds or updates an instance on this node. owner is OwnerAgent,
// OwnerConfig, or the id of a session open on this agent. Re-registering
// an instance of the same owner updates it; another owner's is refused.
func (l *Local) Register(ctx context.Context, in Instance, check healthcheck.Definition, owner string) (*Instance, int64, error) {
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
	if owner != OwnerAgent && owner != OwnerConfig {
		s, err := l.sessions.Get(owner)
		if err != nil {
			return nil, 0, wrapf(ErrNotFound, "session_id: %v", err)
		}
		sess, owner = s, "session:"+owner
	}
	k := regKey(in.Service, in.ID)

	l.mu.Lock()
	old := l.regs[k]
	switch {
	case l.pending[k]:
		l.mu.Unlock()
		return nil, 0, wrapf(ErrAlreadyExists, "instance %s of service %s is being registered right now", in.ID, in.Service)
	case old != nil && old.Owner != owner:
		l.mu.Unlock()
		return nil, 0, wrapf(ErrAlreadyExists, "id: instance %s of service %s is already registered on this node by %s", in.ID, in.Service, old.Owner)
	}
	in.Status, in.Output = StatusPassing, ""
	if check.Kind() != "" {
		in.Status = StatusCritical
		in.Output = "no check result yet"
		if old != nil && old.Check.Kind() == check.Kind() {
			in.Status, in.Output = old.Instance.Status, old.Instance.Output
		}
	}
	l.pending[k] = true
	l.mu.Unlock()

	rev, err := l.write(ctx, in, sess.Lease(), old == nil)
	l.mu.Lock()
	delete(l.pending, k)
	if err != nil {
		l.mu.Unlock()
		return nil, 0, err
	}
	r := &registration{Registration: Registration{Instance: in, Check: check, Owner: owner}, sess: sess}
	l.regs[k] = r
	watchSession := strings.HasPrefix(owner, "session:") && !l.hooked[sess.ID]
	if watchSession {
		l.hooked[sess.ID] = true
	}
	l.mu.Unlock()

	if old != nil && old.mon != nil {
		old.mon.Stop()
	}
	if check.Kind() != "" {
		svc, id := in.Service, in.ID
		r.mon = healthcheck.Start(check, healthcheck.Result{Status: in.Status, Output: in.Output},
			func(res healthcheck.Result) { l.setStatus(r, res) },
			func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := l.Deregister(ctx, svc, id); err == nil {
					l.lg.Info("deregistered an instance critical for too long", zap.String("service", svc), zap.String("id", id))
				}
			})
	}
	if watchSession {
		sid := sess.ID
		sess.OnClose(func() { l.dropSession(sid) })
		sess.OnLeaseChange(func(_, _ clientv3.LeaseID) { l.Kick() })
	}
	if owner == OwnerAgent {
		l.persist()
	}
	out := in
	return &out, rev, nil
}

// write puts the instance under lease. A new registration must not take
// over an instance another node holds; a stale one of this node's (left
// by an earlier run) is taken over.
func (l *Local) write(ctx context.Context, in Instance, lease clientv3.LeaseID, isNew bool) (int64, error) {
	b, _ := json.Marshal(in) // strings and ints only
	key := Key(l.namespace, in.Service, in.ID)
	put := clientv3.OpPut(key, string(b), clientv3.WithLease(lease))
	if !isNew {
		resp, err := l.cli.Put(ctx, key, string(b), clientv3.WithLease(lease))
		if err != nil {
			return 0, err
		}
		return resp.Header.Revision, nil
	}
	resp, err := l.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(put).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	var cur Instance
	if len(kvs) == 1 && json.Unmarshal(kvs[0].Value, &cur) == nil && cur.Node != l.node {
		return 0, wrapf(ErrAlreadyExists, "id: instance %s of service %s is already registered by node %s", in.ID, in.Service, cur.Node)
	}
	// This node's own leftover, or a value that is not an instance: ours.
	presp, err := l.cli.Put(ctx, key, string(b), clientv3.WithLease(lease))
	if err != nil {
		return 0, err
	}
	return presp.Header.Revision, nil
}

// setStatus records a check result and writes it, unless the instance was
// deregistered meanwhile (then nothing may bring its key back).
func (l *Local) setStatus(r *registration, res healthcheck.Result) {
	l.mu.Lock()
	k := regKey(r.Instance.Service, r.Instance.ID)
	if l.regs[k] != r {
		l.mu.Unlock()
		return
	}
	r.Instance.Status, r.Instance.Output = res.Status, res.Output
	in := r.Instance
	lease := r.sess.Lease()
	l.mu.Unlock()

	b, _ := json.Marshal(in)
	key := Key(l.namespace, in.Service, in.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
		return "", nil, wrapf(ErrNotFound, "no instance %s of service %s is registered on this agent", id, service)
	}
	var found []string
	for k, r := range l.regs {
		if r.Instance.ID == id {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return "", nil, wrapf(ErrNotFound, "no instance %s is registered on this agent", id)
	case 1:
		return found[0], l.regs[found[0]], nil
	}
	return "", nil, &FieldError{Field: "service", Msg: fmt.Sprintf("instance id %s is registered under several services (%s); name the service", id, strings.Join(found, ", "))}
}

// Deregister removes an instance registered on this agent; service may be
// empty when the id is unambiguous.
func (l *Local) Deregister(ctx context.Context, service, id string) error {
	l.mu.Lock()
	k, r, err := l.resolveLocked(service, id)
	if err != nil {
		l.mu.Unlock()
		return err
	}
	delete(l.regs, k)
	l.mu.Unlock()
	if r.mon != nil {
		r.mon.Stop()
	}
	if _, err := l.cli.Delete(ctx, Key(l.namespace, r.Instance.Service, r.Instance.ID)); err != nil {
		l.Kick() // anti-entropy removes it once etcd answers
	}
	if r.Owner == OwnerAgent {
		l.persist()
	}
	return nil
}

// Heartbeat reports a TTL check's status.
func (l *Local) Heartbeat(service, id, status, output string) error {
	l.mu.Lock()
	_, r, err := l.resolveLocked(service, id)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if r.mon == nil || r.Check.Kind() != "ttl" {
		return wrapf(ErrNoTTLCheck, "instance %s of service %s has no TTL check", id, service)
	}
	if err := r.mon.Heartbeat(status, output); err != nil {
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
	owner := "session:" + id
	l.mu.Lock()
	var stop []*registration
	for k, r := range l.regs {
		if r.Owner == owner {
			delete(l.regs, k)
			stop = append(stop, r)
		}
	}
	delete(l.hooked, id)
	l.mu.Unlock()
	for _, r := range stop {
		if r.mon != nil {
			r.mon.Stop()
		}
	}
}

// Close stops every check. The registrations stay in etcd until their
// leases end.
func (l *Local) Close() {
	l.mu.Lock()
	regs := l.regs
	l.regs = map[string]*registration{}
	l.mu.Unlock()
	for _, r := range regs {
		if r.mon != nil {
			r.mon.Stop()
		}
	}
}

func (l *Local) persist() {
	l.store.mu.Lock()
	defer l.store.mu.Unlock()
	l.mu.Lock()
	var kept []Registration
	for _, r := range l.regs {
		if r.Owner == OwnerAgent {
			kept = append(kept, r.Registration)
		}
	}
	l.mu.Unlock()
	if err := l.store.save(kept); err != nil {
		l.lg.Warn("could not keep registrations in the data dir", zap.Error(err))
	}
}
