package config

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scriptSource plays one scripted watch per call and records the
// revisions asked for.
type scriptSource struct {
	mu    sync.Mutex
	froms []int64
	plays []func(ctx context.Context, fn func(Update) error) error
}

func (s *scriptSource) Watch(ctx context.Context, _ string, from int64, fn func(Update) error) error {
	s.mu.Lock()
	s.froms = append(s.froms, from)
	n := len(s.froms)
	s.mu.Unlock()
	if n > len(s.plays) {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.plays[n-1](ctx, fn)
}

func entries(keys ...string) []Entry {
	var out []Entry
	for _, k := range keys {
		out = append(out, Entry{Key: k, Value: []byte(k)})
	}
	return out
}

func TestMirrorResumesAndRelists(t *testing.T) {
	played := make(chan struct{})
	src := &scriptSource{plays: []func(context.Context, func(Update) error) error{
		func(_ context.Context, fn func(Update) error) error {
			_ = fn(Update{Snapshot: true, Revision: 5, Entries: entries("a", "b")})
			_ = fn(Update{Revision: 6, Changes: []Change{{KindPut, Entry{Key: "c"}}}})
			return status.Error(codes.Unavailable, "agent restarting")
		},
		func(ctx context.Context, fn func(Update) error) error {
			// 7 was compacted: a relisted snapshot; b and c are gone.
			_ = fn(Update{Snapshot: true, Relisted: true, CompactRevision: 9, Revision: 10, Entries: entries("a", "d")})
			_ = fn(Update{Revision: 9, Changes: []Change{{KindPut, Entry{Key: "old"}}}}) // back in time: ignored
			_ = fn(Update{Revision: 11, Changes: []Change{{KindDelete, Entry{Key: "a"}}}})
			close(played)
			<-ctx.Done()
			return ctx.Err()
		},
	}}
	m := NewMirror(src, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-played:
	case <-time.After(10 * time.Second):
		t.Fatal("the second watch never ran")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if src.froms[0] != 0 || src.froms[1] != 7 {
		t.Fatalf("watched from %v, want [0 7]", src.froms)
	}
	v := m.View()
	if v.Revision != 11 || v.Len() != 1 {
		t.Fatalf("view at %d with %d keys, want only d at 11: %+v", v.Revision, v.Len(), v.Entries(""))
	}
	if _, ok := v.Get("d"); !ok {
		t.Fatal("d missing")
	}
}

func TestMirrorStopsOnBadInput(t *testing.T) {
	src := &scriptSource{plays: []func(context.Context, func(Update) error) error{
		func(context.Context, func(Update) error) error {
			return status.Error(codes.InvalidArgument, "prefix: bad")
		},
	}}
	err := NewMirror(src, "").Run(context.Background())
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Run: %v, want InvalidArgument at once", err)
	}
}
