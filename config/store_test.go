package config

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStoreCAS(t *testing.T) {
	cli := startEtcd(t)
	s := NewStore(cli, "/beacon/")
	ctx := context.Background()

	rev, err := s.Put(ctx, "app/port", []byte("80"), IfRevision(0))
	if err != nil {
		t.Fatalf("put if absent: %v", err)
	}
	// It landed where etcdctl sees it.
	if r, err := cli.Get(ctx, "/beacon/config/app/port"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "80" {
		t.Fatalf("raw get: %v %v", r, err)
	}
	_, err = s.Put(ctx, "app/port", []byte("81"), IfRevision(0))
	var re *RevisionError
	if !errors.As(err, &re) || !errors.Is(err, ErrRevisionMismatch) || re.Current != rev {
		t.Fatalf("put if absent on an existing key: %v, want a RevisionError with current %d", err, rev)
	}
	_, err = s.Put(ctx, "app/port", []byte("81"), IfRevision(rev-1))
	if !errors.As(err, &re) || re.Current != rev || re.Want != rev-1 {
		t.Fatalf("stale if_revision: %v", err)
	}
	rev2, err := s.Put(ctx, "app/port", []byte("82"), IfRevision(rev))
	if err != nil || rev2 <= rev {
		t.Fatalf("put at the right revision: %d %v", rev2, err)
	}
	e, _, err := s.Get(ctx, "app/port")
	if err != nil || string(e.Value) != "82" || e.ModRevision != rev2 || e.Version != 2 {
		t.Fatalf("get: %+v %v", e, err)
	}
	if _, _, err := s.Delete(ctx, "app/port", IfRevision(rev)); !errors.As(err, &re) || re.Current != rev2 {
		t.Fatalf("delete at a stale revision: %v", err)
	}
	if deleted, _, err := s.Delete(ctx, "app/port", IfRevision(rev2)); err != nil || !deleted {
		t.Fatalf("delete: %v %v", deleted, err)
	}
	if _, _, err := s.Get(ctx, "app/port"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if deleted, _, err := s.Delete(ctx, "app/port"); err != nil || deleted {
		t.Fatalf("delete of a missing key: %v %v", deleted, err)
	}
}

func TestStoreValidates(t *testing.T) {
	s := NewStore(nil, "/beacon/") // never reaches etcd
	ctx := context.Background()
	cases := []struct {
		name  string
		err   error
		field string
	}{
		{"empty key", func() error { _, err := s.Put(ctx, "", nil); return err }(), "key"},
		{"leading slash", func() error { _, _, err := s.Get(ctx, "/etc/x"); return err }(), "key"},
		{"dotdot", func() error { _, _, err := s.Delete(ctx, "a/../b"); return err }(), "key"},
		{"long key", func() error { _, err := s.Put(ctx, strings.Repeat("k", MaxKeyLen+1), nil); return err }(), "key"},
		{"control char", func() error { _, err := s.Put(ctx, "a\nb", nil); return err }(), "key"},
		{"trailing slash", func() error { _, err := s.Put(ctx, "a/", nil); return err }(), "key"},
		{"big value", func() error { _, err := s.Put(ctx, "a", make([]byte, MaxValueLen+1)); return err }(), "value"},
		{"negative if_revision", func() error { _, err := s.Put(ctx, "a", nil, IfRevision(-1)); return err }(), "if_revision"},
		{"bad prefix", func() error { _, _, _, err := s.List(ctx, "../x"); return err }(), "prefix"},
		{"negative limit", func() error { _, _, _, err := s.List(ctx, "a/", Limit(-1)); return err }(), "limit"},
		{"negative from", s.Watch(ctx, "a/", -1, func(Update) error { return nil }), "from_revision"},
	}
	for _, c := range cases {
		var fe *FieldError
		if !errors.As(c.err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want a FieldError on %q", c.name, c.err, c.field)
		}
	}
	if err := ValidatePrefix("prefix", ""); err != nil {
		t.Errorf("empty prefix: %v", err)
	}
}

// TestStoreWatch: snapshot, then a transaction's changes as one update,
// then a resumed watch from a compacted revision relists.
func TestStoreWatch(t *testing.T) {
	cli := startEtcd(t)
	s := NewStore(cli, "/beacon/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r1, _ := s.Put(ctx, "app/a", []byte("1"))
	if _, err := s.Put(ctx, "other/x", []byte("x")); err != nil {
		t.Fatal(err)
	}

	updates := make(chan Update, 16)
	wctx, wcancel := context.WithCancel(ctx)
	go func() {
		_ = s.Watch(wctx, "app/", 0, func(u Update) error { updates <- u; return nil })
	}()
	snap := next(t, updates)
	if !snap.Snapshot || len(snap.Entries) != 1 || snap.Entries[0].Key != "app/a" || snap.Revision < r1 {
		t.Fatalf("first update: %+v", snap)
	}
	tx, err := cli.Txn(ctx).Then(clientv3.OpPut("/beacon/config/app/b", "2"), clientv3.OpDelete("/beacon/config/app/a")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	u := next(t, updates)
	if u.Snapshot || u.Revision != tx.Header.Revision || len(u.Changes) != 2 ||
		u.Changes[0].Kind != KindPut || u.Changes[0].Entry.Key != "app/b" ||
		u.Changes[1].Kind != KindDelete || u.Changes[1].Entry.Key != "app/a" {
		t.Fatalf("transaction: %+v", u)
	}
	wcancel()

	// Compact past r1, then resume from r1: a relisted snapshot, never a gap.
	last, _ := s.Put(ctx, "app/c", []byte("3"))
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	updates = make(chan Update, 16)
	go func() {
		_ = s.Watch(ctx, "app/", r1, func(u Update) error { updates <- u; return nil })
	}()
	u = next(t, updates)
	if !u.Snapshot || !u.Relisted || u.CompactRevision != last || u.Revision < last || len(u.Entries) != 2 {
		t.Fatalf("resume from a compacted revision: %+v", u)
	}
	r4, _ := s.Put(ctx, "app/d", []byte("4"))
	if u = next(t, updates); u.Snapshot || u.Revision != r4 {
		t.Fatalf("after the relist: %+v, want the change at %d", u, r4)
	}
}

func next(t *testing.T, ch chan Update) Update {
	t.Helper()
	select {
	case u := <-ch:
		return u
	case <-time.After(10 * time.Second):
		t.Fatal("no update")
		return Update{}
	}
}
