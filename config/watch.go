package config

import (
	"context"
	"errors"
	"fmt"

	"github.com/beaconhq/beacon/internal/fanout"
	"github.com/beaconhq/beacon/internal/rpcerr"
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
//
// Watchers of the same prefix share one etcd watch (internal/fanout):
// however many API streams come and go, etcd sees one watch per prefix.
// Only a watch resumed from a revision the shared watch has already gone
// past reads that history on an etcd watch of its own. A watcher that
// leaves more than the hub's Limit changes (4,096), or MaxBytes bytes of
// them (max-watch-buffer-bytes, 16 MiB), unread is dropped with
// ResourceExhausted naming the bound, and told the revision to watch
// again from.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64, fn func(Update) error) error {
	if err := ValidatePrefix("prefix", prefix); err != nil {
		return err
	}
	if err := validRevision("from_revision", fromRev); err != nil {
		return err
	}
	from, snap := fromRev, Update{}
	for {
		compacted, err := s.watchOnce(ctx, prefix, from, snap, fn)
		if err != nil {
			return err
		}
		// from was compacted away: a relisted snapshot stands in for the
		// changes since.
		from, snap = 0, Update{Relisted: true, CompactRevision: compacted}
	}
}

// watchOnce hands fn the snapshot snap (filled in) if from is 0, or the
// changes from revision from on, then every change after that, until an
// error, or until etcd compacted what the watch needed (then it returns
// the compact revision, for the caller to relist).
func (s *Store) watchOnce(ctx context.Context, prefix string, from int64, snap Update, fn func(Update) error) (compacted int64, err error) {
	sub, err := fanout.For(s.cli).Subscribe(ctx, s.root+prefix)
	if err != nil {
		return feedError(ctx, err, 0)
	}
	defer sub.Close()
	// after: the last revision fn has seen (or need not see); only the
	// feed's events above it are passed on.
	var after int64
	switch {
	case from == 0:
		if after, err = s.snapshot(ctx, prefix, snap, fn); err != nil {
			return 0, err
		}
		// The snapshot is a linearizable read, made after the feed was
		// live at sub.From(): it cannot be older, so no change falls
		// between the two.
		if after < sub.From() {
			return 0, rpcerr.NewNamed(codes.Unavailable, fmt.Sprintf("config: the snapshot at revision %d is older than the watch at %d; watch again", after, sub.From()))
		}
	case from > sub.From():
		// The feed delivers everything after sub.From(): the changes from
		// from on are all still to come (the usual case of a client
		// resuming where it left off).
		after = from - 1
	default:
		// The changes from from to sub.From() are history the feed never
		// had: read them, and everything after, on a watch of its own.
		sub.Close()
		return s.follow(ctx, prefix, from, fn)
	}
	for {
		evs, err := sub.Next(ctx)
		if err != nil {
			return feedError(ctx, err, after)
		}
		var u *Update
		flush := func() error {
			if u == nil {
				return nil
			}
			err := fn(*u)
			after, u = u.Revision, nil
			return err
		}
		for _, ev := range evs {
			if ev.Kv.ModRevision <= after {
				continue
			}
			if u != nil && ev.Kv.ModRevision != u.Revision {
				if err := flush(); err != nil {
					return 0, err
				}
			}
			if u == nil {
				u = &Update{Revision: ev.Kv.ModRevision}
			}
			u.Changes = append(u.Changes, s.change(ev))
		}
		if err := flush(); err != nil {
			return 0, err
		}
	}
}

// feedError turns the end of a shared watch into Watch's terms: the
// context's error, a compact revision to relist from, etcd's error (no
// leader: Unavailable), or for a watcher dropped as too slow, a
// ResourceExhausted error naming the revision to watch again from.
func feedError(ctx context.Context, err error, after int64) (int64, error) {
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	var slow *fanout.SlowError
	if errors.As(err, &slow) {
		return 0, rpcerr.NewNamed(codes.ResourceExhausted, fmt.Sprintf(
			"config: this watcher left more than %s unread (%s %d) and was dropped; watch again with from_revision %d",
			slow.Unread(), slow.Limit, slow.Value, after+1))
	}
	var b *fanout.BrokenError
	if errors.As(err, &b) {
		switch {
		case b.CompactRevision != 0:
			return b.CompactRevision, nil
		case b.Err != nil:
			return 0, b.Err
		}
		return 0, errWatchClosed
	}
	return 0, err
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

// follow watches from rev on a watch of its own and hands each revision's
// changes to fn. It returns only with an error, or with etcd's compact
// revision if rev was compacted away (then the caller relists).
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
			u.Changes = append(u.Changes, s.change(ev))
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

// change is one etcd event as a Change.
func (s *Store) change(ev *clientv3.Event) Change {
	c := Change{Kind: KindPut, Entry: s.entry(ev.Kv.Key, ev.Kv.Value, ev.Kv.CreateRevision, ev.Kv.ModRevision, ev.Kv.Version)}
	if ev.Type == clientv3.EventTypeDelete {
		c.Kind = KindDelete
		c.Entry.Value = nil
	}
	return c
}

// errWatchClosed: etcd's watch channel closed without saying why (the
// client is closing). A caller retries; over gRPC it is Unavailable.
var errWatchClosed = rpcerr.NewNamed(codes.Unavailable, "config: the etcd watch closed")
