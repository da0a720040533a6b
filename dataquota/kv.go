package dataquota

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// What a put costs beyond its key and value: etcd keeps each revision as
// a record of the key, its revisions, version and lease under a revision
// key. And bbolt copies a leaf page on every write, with the values it
// holds, so a large value costs the backend's size more than its length:
// up to twice (a review measured 1.3–2×). A delete costs nothing here:
// a delete of nothing writes nothing, and a tombstone's few bytes are
// caught by the next reading.
const putOverhead = 512

func putCost(op clientv3.Op) int64 {
	return int64(len(op.KeyBytes())+2*len(op.ValueBytes())) + putOverhead
}

// Client returns cli with its KV guarded: every Put, Txn and Do is
// admitted by the bytes it asks etcd to keep, judged by its context's
// class, before it is sent; what a write did not use (it failed, or its
// transaction took the branch with fewer puts) is taken back. Everything
// else (leases, watches, maintenance) is cli's.
func (g *Guard) Client(cli *clientv3.Client) *clientv3.Client {
	if g.off() {
		return cli
	}
	c := clientv3.NewCtxClient(cli.Ctx(), clientv3.WithZapLogger(cli.GetLogger()))
	c.KV = guardedKV{KV: cli.KV, g: g}
	c.Lease, c.Watcher, c.Cluster, c.Maintenance, c.Auth = cli.Lease, cli.Watcher, cli.Cluster, cli.Maintenance, cli.Auth
	return c
}

type guardedKV struct {
	clientv3.KV
	g *Guard
}

// costOf is what ops ask etcd to keep: puts their putCost; a nested
// transaction its larger branch. onlyDeletes says whether ops only
// delete: such a write is never refused, since it is how room is made.
func costOf(ops ...clientv3.Op) (cost int64, onlyDeletes bool) {
	onlyDeletes = true
	for _, op := range ops {
		switch {
		case op.IsPut():
			cost += putCost(op)
			onlyDeletes = false
		case op.IsTxn():
			_, then, els := op.Txn()
			t, td := costOf(then...)
			e, ed := costOf(els...)
			cost += max(t, e)
			onlyDeletes = onlyDeletes && td && ed
		}
	}
	return cost, onlyDeletes
}

func (k guardedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	n := putCost(clientv3.OpPut(key, val))
	gen, err := k.g.admit(ctx, n, false)
	if err != nil {
		return nil, err
	}
	resp, err := k.KV.Put(ctx, key, val, opts...)
	if err != nil {
		k.g.unadmit(n, gen)
	}
	return resp, err
}

func (k guardedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	n, deletes := costOf(op)
	if n == 0 {
		return k.KV.Do(ctx, op)
	}
	gen, err := k.g.admit(ctx, n, deletes)
	if err != nil {
		return clientv3.OpResponse{}, err
	}
	resp, err := k.KV.Do(ctx, op)
	if err != nil {
		k.g.unadmit(n, gen)
	}
	return resp, err
}

func (k guardedKV) Txn(ctx context.Context) clientv3.Txn {
	return &guardedTxn{txn: k.KV.Txn(ctx), ctx: ctx, g: k.g, thenDeletes: true, elseDeletes: true}
}

// guardedTxn counts a transaction's branches as they are given and is
// admitted at Commit by the larger one; after the commit the branch not
// taken is taken back.
type guardedTxn struct {
	txn                      clientv3.Txn
	ctx                      context.Context
	g                        *Guard
	then, els                int64
	thenDeletes, elseDeletes bool
}

func (t *guardedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.txn = t.txn.If(cs...)
	return t
}

func (t *guardedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.then, t.thenDeletes = costOf(ops...)
	t.txn = t.txn.Then(ops...)
	return t
}

func (t *guardedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.els, t.elseDeletes = costOf(ops...)
	t.txn = t.txn.Else(ops...)
	return t
}

func (t *guardedTxn) Commit() (*clientv3.TxnResponse, error) {
	n := max(t.then, t.els)
	if n == 0 {
		return t.txn.Commit()
	}
	gen, err := t.g.admit(t.ctx, n, t.thenDeletes && t.elseDeletes)
	if err != nil {
		return nil, err
	}
	resp, err := t.txn.Commit()
	switch {
	case err != nil:
		t.g.unadmit(n, gen)
	case resp.Succeeded:
		t.g.unadmit(n-t.then, gen)
	default:
		t.g.unadmit(n-t.els, gen)
	}
	return resp, err
}
