package registry

import (
	"context"
	"fmt"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// Owners of registrations, and who may change them:
//
//   - a session's instance (SessionOwner, registered with its
//     session_id) only in that session: Register again, Deregister,
//     Heartbeat each need the same session_id;
//   - an agent-owned instance (OwnerAgent: the CLI, or the API without a
//     session) only without a session_id — whoever may call the agent's API
//     without a session acts as its operator (ACLs decide who that is);
//   - a config file's instance (OwnerConfig) is changed through the file
//     and a reload alone; its TTL check takes a Heartbeat without a
//     session_id.
//
// A session id is a secret that proves ownership: it is kept in memory
// only (the etcd value names the node, the key's lease the session), and
// no answer or message names another owner's id.

// Owner is who registered an instance, and so who may change it: the
// agent, its config file, or one session.
type Owner struct {
	kind    ownerKind
	session string // the session's id, for a session's instance
}

type ownerKind uint8

const (
	agentOwned ownerKind = iota
	configOwned
	sessionOwned
)

var (
	// OwnerAgent: registered by the CLI or the API without a session;
	// kept in the data dir until deregistered.
	OwnerAgent = Owner{kind: agentOwned}
	// OwnerConfig: a services: block of the agent's config file.
	OwnerConfig = Owner{kind: configOwned}
)

// SessionOwner is the owner of what a session registers.
func SessionOwner(id string) Owner { return Owner{kind: sessionOwned, session: id} }

// Session is the id of the session that owns the instance, if one does.
func (o Owner) Session() (id string, ok bool) { return o.session, o.kind == sessionOwned }

// MarshalText writes the owner into the data dir's journal, which keeps
// agent-owned instances only. A session's id is a secret kept in memory:
// it is never written.
func (o Owner) MarshalText() ([]byte, error) {
	switch o.kind {
	case agentOwned:
		return []byte("agent"), nil
	case configOwned:
		return []byte("config"), nil
	}
	return []byte("session"), nil
}

// UnmarshalText reads what MarshalText wrote. The journal keeps the
// agent's instances only (and restore takes each back as the agent's), so
// any other word reads as the agent rather than failing a record.
func (o *Owner) UnmarshalText(b []byte) error {
	*o = OwnerAgent
	if string(b) == "config" {
		*o = OwnerConfig
	}
	return nil
}

// ErrNotOwner: the caller is not the instance's owner.
var ErrNotOwner = rpcerr.NewNamed(codes.PermissionDenied, "not the instance's owner")

// errUnknownSession: the session_id named no session open on this agent;
// the id is not repeated.
var errUnknownSession = rpcerr.Wrap(ErrNotFound, "session_id: no session with that id is open on this agent")

// ownerOf is the owner a call with sessionID acts as: OwnerAgent without
// one, else the session's, which must be open on this agent.
func (l *Local) ownerOf(sessionID string) (Owner, error) {
	if sessionID == "" {
		return OwnerAgent, nil
	}
	if _, err := l.sessions.Get(sessionID); err != nil {
		return Owner{}, errUnknownSession
	}
	return SessionOwner(sessionID), nil
}

// describeOwner names owner for a message to caller, never by its id.
func describeOwner(owner, caller Owner) string {
	switch {
	case owner == OwnerAgent:
		return "the agent (registered without a session)"
	case owner == OwnerConfig:
		return "the agent's config file"
	case owner == caller:
		return "this session"
	}
	return "another session"
}

// mayChange says whether caller may do what (deregister, heartbeat) to r.
func mayChange(r *registration, caller Owner, what string) error {
	in := r.Instance
	switch {
	case r.Owner == OwnerConfig && what == "deregister":
		return rpcerr.Wrapf(ErrNotOwner, "instance %s of service %s comes from the agent's config file: remove its services block and reload (SIGHUP)", in.ID, in.Service)
	case r.Owner == caller || r.Owner == OwnerConfig && caller == OwnerAgent:
		return nil
	case r.Owner.kind == sessionOwned && caller == OwnerAgent:
		return rpcerr.Wrapf(ErrNotOwner, "instance %s of service %s was registered in a session: only that session may %s it (give its session_id)", in.ID, in.Service, what)
	case r.Owner.kind == sessionOwned:
		return rpcerr.Wrapf(ErrNotOwner, "instance %s of service %s belongs to another session", in.ID, in.Service)
	}
	return rpcerr.Wrapf(ErrNotOwner, "instance %s of service %s is owned by %s: %s it without a session_id", in.ID, in.Service, describeOwner(r.Owner, caller), what)
}

// DeregisterAs removes an instance registered on this agent if caller (an
// owner, see ownerOf) may; service may be empty when the id is
// unambiguous.
func (l *Local) DeregisterAs(ctx context.Context, caller Owner, service, id string) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrStopping
	}
	_, r, err := l.resolveLocked(service, id)
	if err == nil {
		err = mayChange(r, caller, "deregister")
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	// deregister removes r only if it is still the key's registration: a
	// registration of another owner that replaced it meanwhile stays.
	if !l.deregister(ctx, r) {
		return rpcerr.Wrapf(ErrNotFound, "instance %s of service %s was deregistered meanwhile", r.Instance.ID, r.Instance.Service)
	}
	return nil
}

// ownerText is "owned by X" for a conflict's message.
func ownerText(owner, caller Owner) string {
	return fmt.Sprintf("by %s", describeOwner(owner, caller))
}
