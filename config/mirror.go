package config

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Backoff between attempts to resume a broken watch.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Mirror keeps a copy of the keys under a prefix, fed by a Source's
// watch. A broken watch (agent restart, no quorum) is resumed from the
// revision after the last one applied, so nothing is missed; if etcd
// compacted that revision the source relists. Readers take a View: a
// consistent copy at one revision.
type Mirror struct {
	src    Source
	prefix string
	lg     *zap.Logger

	mu      sync.RWMutex
	entries map[string]Entry
	rev     int64
	ready   chan struct{} // closed after the first snapshot
	changed chan struct{} // one pending kick, however many updates
}

// NewMirror returns a mirror of the keys under prefix; Run feeds it.
func NewMirror(src Source, prefix string, opts ...Option) *Mirror {
	return &Mirror{src: src, prefix: prefix, lg: loggerOf(opts), entries: map[string]Entry{},
		ready: make(chan struct{}), changed: make(chan struct{}, 1)}
}

// Run follows the source until ctx ends, resuming broken watches after a
// backoff (100ms doubling to 5s). It returns ctx's error, or an error no
// retry can fix (bad prefix: InvalidArgument; a service the agent lacks).
func (m *Mirror) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		from := m.Revision()
		if from > 0 {
			from++
		}
		progressed := false
		err := m.src.Watch(ctx, m.prefix, from, func(u Update) error {
			progressed = true
			m.apply(u)
			return nil
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if permanent(err) {
			return err
		}
		if progressed {
			backoff = minBackoff
		}
		m.lg.Warn("config watch broke; resuming", zap.String("prefix", m.prefix), zap.Int64("from_revision", m.Revision()+1),
			zap.Duration("after", backoff), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// permanent reports errors that retrying cannot fix.
func permanent(err error) bool {
	var fe *FieldError
	if errors.As(err, &fe) {
		return true
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.InvalidArgument, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated:
			return true
		}
	}
	return false
}

// apply takes one update in; revisions never go back.
func (m *Mirror) apply(u Update) {
	m.mu.Lock()
	if u.Revision < m.rev || (!u.Snapshot && u.Revision == m.rev) {
		m.mu.Unlock()
		m.lg.Warn("config watch: update older than the mirror ignored", zap.Int64("revision", u.Revision), zap.Int64("mirror", m.rev))
		return
	}
	if u.Snapshot {
		if u.Relisted {
			m.lg.Info("config watch relisted: the revision to resume from was compacted",
				zap.String("prefix", m.prefix), zap.Int64("compact_revision", u.CompactRevision), zap.Int64("revision", u.Revision))
		}
		m.entries = make(map[string]Entry, len(u.Entries))
		for _, e := range u.Entries {
			m.entries[e.Key] = e
		}
	}
	for _, c := range u.Changes {
		if c.Kind == KindDelete {
			delete(m.entries, c.Entry.Key)
		} else {
			m.entries[c.Entry.Key] = c.Entry
		}
	}
	first := m.rev == 0
	m.rev = u.Revision
	m.mu.Unlock()
	if first {
		close(m.ready)
	}
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Ready is closed once the first snapshot is in.
func (m *Mirror) Ready() <-chan struct{} { return m.ready }

// Changed receives after updates; several updates may share one receive,
// so read the View after it rather than counting.
func (m *Mirror) Changed() <-chan struct{} { return m.changed }

// Revision is the revision of the last update applied (0 before the
// first snapshot).
func (m *Mirror) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// View returns a copy of the mirror at its current revision.
func (m *Mirror) View() *View {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v := &View{Revision: m.rev, entries: make(map[string]Entry, len(m.entries))}
	for k, e := range m.entries {
		v.entries[k] = e
	}
	return v
}

// View is the keys of a Mirror at one revision. It does not change.
type View struct {
	Revision int64
	entries  map[string]Entry
}

// NewView builds a view from entries (for tests and one-shot renders).
func NewView(rev int64, entries []Entry) *View {
	v := &View{Revision: rev, entries: make(map[string]Entry, len(entries))}
	for _, e := range entries {
		v.entries[e.Key] = e
	}
	return v
}

// Get returns one key.
func (v *View) Get(key string) (Entry, bool) {
	e, ok := v.entries[key]
	return e, ok
}

// Len is the number of keys.
func (v *View) Len() int { return len(v.entries) }

// Entries returns the keys starting with prefix, in key order.
func (v *View) Entries(prefix string) []Entry {
	var out []Entry
	for k, e := range v.entries {
		if strings.HasPrefix(k, prefix) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}
