package config

import (
	"context"
	"strings"
	"sync"
)

// fakeSource is an in-memory Source: set and del change it and notify
// every watch.
type fakeSource struct {
	mu      sync.Mutex
	entries map[string]Entry
	rev     int64
	subs    map[chan Update]string
}

func newFakeSource() *fakeSource {
	return &fakeSource{entries: map[string]Entry{}, rev: 1, subs: map[chan Update]string{}}
}

func (f *fakeSource) set(k, v string) { f.change(Change{KindPut, Entry{Key: k, Value: []byte(v)}}) }
func (f *fakeSource) del(k string)    { f.change(Change{KindDelete, Entry{Key: k}}) }

func (f *fakeSource) change(c Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	c.Entry.ModRevision = f.rev
	if c.Kind == KindDelete {
		delete(f.entries, c.Entry.Key)
	} else {
		f.entries[c.Entry.Key] = c.Entry
	}
	for ch, prefix := range f.subs {
		if strings.HasPrefix(c.Entry.Key, prefix) {
			ch <- Update{Revision: f.rev, Changes: []Change{c}}
		}
	}
}

func (f *fakeSource) Watch(ctx context.Context, prefix string, from int64, fn func(Update) error) error {
	ch := make(chan Update, 1000)
	f.mu.Lock()
	snap := Update{Snapshot: true, Revision: f.rev}
	for _, e := range f.entries {
		if strings.HasPrefix(e.Key, prefix) {
			snap.Entries = append(snap.Entries, e)
		}
	}
	f.subs[ch] = prefix
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	if from == 0 {
		if err := fn(snap); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u := <-ch:
			if err := fn(u); err != nil {
				return err
			}
		}
	}
}
