package config

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
)

// ChangeKind says what a Change did.
type ChangeKind int

// Kinds of change.
const (
	KindPut ChangeKind = iota
	KindDelete
)

func (k ChangeKind) String() string {
	if k == KindDelete {
		return "DELETE"
	}
	return "PUT"
}

// Change is one key put or deleted. For a delete, Entry holds only the key
// and, in ModRevision, the revision of the delete.
type Change struct {
	Kind  ChangeKind
	Entry Entry
}

// Update is one step of a watch: a snapshot of every key under the prefix
// at Revision (replacing all that came before), or the changes made at
// Revision (a transaction may change several keys at once).
type Update struct {
	Revision int64
	Snapshot bool
	// Relisted: this snapshot stands in for the changes from a revision
	// that etcd had compacted away (CompactRevision is the oldest it
	// keeps); nothing was skipped silently.
	Relisted        bool
	CompactRevision int64
	Entries         []Entry  // Snapshot
	Changes         []Change // !Snapshot
}

// Source is where watched keys come from: the Store on the agent, or the
// agent's gRPC Config service elsewhere (Remote).
type Source interface {
	// Watch calls fn with the keys under prefix: with fromRev 0 a snapshot
	// first, then every change in revision order; with fromRev R the
	// changes from revision R on, or a relisted snapshot if R was
	// compacted. It returns when ctx ends, when fn returns an error (that
	// error), or when the watch breaks.
	Watch(ctx context.Context, prefix string, fromRev int64, fn func(Update) error) error
}

// Watch implements Source on etcd. Revisions passed to fn only go
// forward: after a snapshot at R the watch resumes at R+1; after changes
// at R, at R+1. Without a raft leader the watch ends with an error
// (Unavailable over gRPC) rather than waiting silently.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64, fn func(Update) error) error {
	if err := ValidatePrefix("prefix", prefix); err != nil {
		return err
	}
	if err := validRevision("from_revision", fromRev); err != nil {
		return err
	}
	next := fromRev
	if next == 0 {
		rev, err := s.snapshot(ctx, prefix, Update{}, fn)
		if err != nil {
			return err
		}
		next = rev + 1
	}
	for {
		compacted, err := s.follow(ctx, prefix, next, fn)
		if err != nil {
			return err
		}
		rev, err := s.snapshot(ctx, prefix, Update{Relisted: true, CompactRevision: compacted}, fn)
		if err != nil {
			return err
		}
		next = rev + 1
	}
}

// snapshot reads every key under prefix and hands them to fn as one
// Update; it returns the revision read at.
func (s *Store) snapshot(ctx context.Context, prefix string, u Update, fn func(Update) error) (int64, error) {
	entries, rev, _, err := s.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	u.Snapshot, u.Revision, u.Entries = true, rev, entries
	return rev, fn(u)
}

// follow watches from rev and hands each revision's changes to fn. It
// returns only with an error, or with etcd's compact revision if rev was
// compacted away (then the caller relists).
func (s *Store) follow(ctx context.Context, prefix string, rev int64, fn func(Update) error) (compacted int64, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range s.cli.Watch(wctx, s.root+prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if wr.CompactRevision != 0 {
			return wr.CompactRevision, nil
		}
		if err := wr.Err(); err != nil {
			return 0, err
		}
		var u *Update
		flush := func() error {
			if u == nil {
				return nil
			}
			err := fn(*u)
			u = nil
			return err
		}
		for _, ev := range wr.Events {
			if u != nil && ev.Kv.ModRevision != u.Revision {
				if err := flush(); err != nil {
					return 0, err
				}
			}
			if u == nil {
				u = &Update{Revision: ev.Kv.ModRevision}
			}
			c := Change{Kind: KindPut, Entry: s.entry(ev.Kv.Key, ev.Kv.Value, ev.Kv.CreateRevision, ev.Kv.ModRevision, ev.Kv.Version)}
			if ev.Type == clientv3.EventTypeDelete {
				c.Kind = KindDelete
				c.Entry.Value = nil
			}
			u.Changes = append(u.Changes, c)
		}
		if err := flush(); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return 0, errWatchClosed
}

// errWatchClosed: etcd's watch channel closed without saying why (the
// client is closing). A caller retries; over gRPC it is Unavailable.
var errWatchClosed = &codedError{codes.Unavailable, "config: the etcd watch closed"}

type codedError struct {
	code codes.Code
	msg  string
}

func (e *codedError) Error() string        { return e.msg }
func (e *codedError) GRPCCode() codes.Code { return e.code }
