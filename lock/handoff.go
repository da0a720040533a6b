package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Handoffs inside one agent. When a grant is released through the hub
// while waiters of the same lock wait on it, the release's transaction
// also reads the head of the line, right after its delete, and hands it
// to those waiters: the next holder learns of its turn from the release's
// answer, without waiting for etcd's watch event to come back over the
// agent's client connection (a socket since the agent stopped using the
// in-process watch; see embedded.localClient). The watch still carries
// every other release, expiry and revocation, and the waiter takes
// whichever news comes first.
//
// Why a head proves a turn: the head is the first keys of the line by
// create revision at revision R, read in the same transaction as the
// delete. A waiter whose key is among the first limit of them, with its
// own create revision, held the lock at R: its key, and so its lease, was
// alive then, and fewer than limit keys came before it. That is the same
// fact the watch's events prove (see waitTurn), at a known revision. A
// head from before the waiter's key existed (R < its token) says nothing
// about it, and is ignored; so is one that does not list it among the
// first limit keys: the waiter goes on waiting for events.

// errTurn ends a wait whose turn a head proved.
var errTurn = errors.New("the release's read of the line shows the waiter holds")

// lineHead is the first keys of a lock's line at one revision, in create
// revision order, as a release through the hub read them.
type lineHead struct {
	rev  int64
	keys []headKey
}

type headKey struct {
	key    string
	create int64
}

// grants reports whether h shows that l holds the lock with the given
// limit (a nil head shows nothing).
func (h *lineHead) grants(l *Lock, limit int) bool {
	if h == nil || h.rev < l.Token {
		return false
	}
	for i, k := range h.keys {
		if i >= limit {
			return false
		}
		if k.key == l.Key {
			return k.create == l.Token
		}
	}
	return false
}

// Release is Release (the package function) for a grant of a lock that
// waiters of this hub may wait for: with waiters, the transaction also
// reads the head of the line and hands it to them. Without waiters it is
// the same single delete.
func (h *Hub) Release(ctx context.Context, cli *clientv3.Client, key string, token int64) error {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return Release(ctx, cli, key, token)
	}
	prefix := key[:i]
	n := h.waitingLimit(prefix)
	if n == 0 {
		return Release(ctx, cli, key, token)
	}
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", token)).
		Then(clientv3.OpDelete(key), clientv3.OpGet(prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(int64(n)))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %s with token %d no longer holds", ErrLost, key, token)
	}
	head := &lineHead{rev: resp.Header.Revision}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		head.keys = append(head.keys, headKey{key: string(kv.Key), create: kv.CreateRevision})
	}
	h.announce(prefix, head)
	return nil
}

// waitingLimit is the largest limit among the waiters of the lock at
// prefix: how much of the line's head they need to see. 0: none wait.
func (h *Hub) waitingLimit(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	if f := h.feeds[prefix]; f != nil {
		for s := range f.subs {
			n = max(n, s.limit)
		}
	}
	return min(n, MaxLimit)
}

// announce hands head to the lock's waiters.
func (h *Hub) announce(prefix string, head *lineHead) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.feeds[prefix]
	if f == nil {
		return
	}
	for s := range f.subs {
		s.mu.Lock()
		if s.head == nil || s.head.rev < head.rev {
			s.head = head
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}
