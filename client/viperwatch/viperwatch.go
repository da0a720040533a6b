// Package viperwatch keeps a viper instance fed from the agent's config
// keys. It lives apart from package client so that an application that
// only registers does not link viper and the config recipe.
package viperwatch

import (
	"context"
	"strings"
	"sync"

	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/config"
	"github.com/spf13/viper"
)

// Feed keeps a viper instance fed from the config keys under a
// prefix. viper is not safe for concurrent use, and the feed writes to it
// from its own goroutine: read the instance inside View.
type Feed struct {
	v        *viper.Viper
	prefix   string
	mirror   *config.Mirror
	onChange func(rev int64)

	mu     sync.RWMutex
	values map[string]string // viper key → value set
	rev    int64

	done chan struct{}
	err  error
}

// Option tunes Watch.
type Option func(*Feed)

// WithOnChange calls fn (from the feed's goroutine, outside the
// lock) after each change is in the viper instance, with its revision.
func WithOnChange(fn func(rev int64)) Option {
	return func(f *Feed) { f.onChange = fn }
}

// Watch feeds v from the config keys under prefix until ctx ends. It
// returns once the current keys are in v.
//
// Mapping: the part of a key after prefix, with '/' turned into viper's
// '.', is the viper key: with prefix "app/", "app/db/host" becomes
// "db.host" (viper lowercases keys). Values are strings; viper's
// GetInt, GetBool, GetDuration... convert them. The keys go into viper's
// override layer (v.Set): they win over flags, env, config files and
// defaults. A deleted key is set to nil, which makes viper fall back to
// those lower layers (a default, say).
//
// A broken watch (agent restart) is resumed without losing a change; if
// the revision to resume from was compacted, the feed relists, and keys
// deleted meanwhile are unset.
func Watch(ctx context.Context, c *client.Client, prefix string, v *viper.Viper, opts ...Option) (*Feed, error) {
	if err := config.ValidatePrefix("prefix", prefix); err != nil {
		return nil, err
	}
	f := &Feed{v: v, prefix: prefix, values: map[string]string{}, done: make(chan struct{})}
	for _, o := range opts {
		o(f)
	}
	f.mirror = config.NewMirror(config.NewRemote(c.Config()), prefix)
	ctx, cancel := context.WithCancel(ctx)
	watchErr := make(chan error, 1)
	go func() { watchErr <- f.mirror.Run(ctx) }()
	select {
	case <-f.mirror.Ready():
	case err := <-watchErr:
		cancel()
		return nil, err
	}
	f.apply()
	go func() {
		defer cancel()
		defer close(f.done)
		for {
			select {
			case err := <-watchErr:
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
				return
			case <-f.mirror.Changed():
				f.apply()
			}
		}
	}()
	return f, nil
}

// apply sets what changed since the last apply, and unsets what went.
func (f *Feed) apply() {
	view := f.mirror.View()
	next := make(map[string]string, view.Len())
	for _, e := range view.Entries(f.prefix) {
		if k := f.viperKey(e.Key); k != "" {
			next[k] = string(e.Value)
		}
	}
	f.mu.Lock()
	for k := range f.values {
		if _, ok := next[k]; !ok {
			f.v.Set(k, nil)
		}
	}
	for k, val := range next {
		if old, ok := f.values[k]; !ok || old != val {
			f.v.Set(k, val)
		}
	}
	f.values, f.rev = next, view.Revision
	f.mu.Unlock()
	if f.onChange != nil {
		f.onChange(view.Revision)
	}
}

func (f *Feed) viperKey(key string) string {
	rel := strings.Trim(strings.TrimPrefix(key, f.prefix), "/")
	return strings.ReplaceAll(rel, "/", ".")
}

// View calls fn with the viper instance while the feed does not write to
// it.
func (f *Feed) View(fn func(v *viper.Viper)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.v)
}

// Revision is the config revision the viper instance reflects.
func (f *Feed) Revision() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rev
}

// Done is closed when the feed stops: ctx ended, or the agent refused the
// watch (Err says why).
func (f *Feed) Done() <-chan struct{} { return f.done }

// Err is why the feed stopped (ctx's error when it was cancelled).
func (f *Feed) Err() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.err
}
