package queue

// WithLast messages: a queue's "big task", reserved only once every other
// message of the queue, pushed before or after it, has been acked.

import (
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WithLast makes the message wait for the rest of the queue: it is handed
// out only when the queue holds no other message (ready, reserved or
// delayed) but WithLast ones, and no dead letter. A gate's Count does not
// count it.
func WithLast() EnqueueOption { return func(r *enqueueReq) { r.last = true } }

// othersLeft counts what holds back the view's WithLast messages: the
// other messages, and the dead letters (a message that died was not
// acked; redrive or purge it to let the last ones run). v.mu held.
func (v *view) othersLeft() int {
	n := len(v.dead)
	for _, e := range v.msgs {
		if !e.m.Last {
			n++
		}
	}
	return n
}

// lastCmps prove, in the transaction that reserves a WithLast message,
// what the view saw at revision rev: no message but WithLast ones, no
// dead letter. Every key under msg/ still has a mod revision of at most
// rev (a push creates a key, a reservation rewrites one, so neither can
// have happened since; acks only delete), and dead/ holds no key at all.
func lastCmps(k keys, rev int64) []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(k.msgPrefix()), "<", rev+1).WithPrefix(),
		clientv3.Compare(clientv3.Version(k.deadPrefix()), "=", 0).WithPrefix(),
	}
}
