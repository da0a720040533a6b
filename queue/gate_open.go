package queue

// Opening gates: every view of a gated queue checks the gate's condition on
// each change it sees and, when it holds, opens the gate with one
// transaction that compares the gate's revision as seen and, where etcd
// can compare it, the condition itself. Agents racing to open: one wins,
// the others' compares fail, and all see the gate open.

import (
	"context"
	"crypto/sha256"
	"errors"
	"github.com/beaconhq/beacon/dataquota"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cfgState is the view's picture of the config key a Key gate waits for.
type cfgState struct {
	key    string // the gate's key; the fields below are of it
	known  bool   // read at least once
	exists bool
	// The SHA-256 of its value, not the value: a config value is up to
	// 1 MiB, and every view of a gate on the key would keep a copy.
	sum [sha256.Size]byte
	mod int64
}

// gateTry is the state an opening was tried in: not tried again unless
// something changed (the transaction compared it all).
type gateTry struct{ gateMod, rev, cfgMod int64 }

// startOpener starts the view's opener the first time the view holds a
// gate: views of queues that never had one cost no goroutine for it.
// v.mu held.
func (v *view) startOpener() {
	if v.gate != nil && !v.opener {
		v.opener = true
		go v.runGate()
	}
}

// runGate is the view's opener, from the first gate it saw to the view's
// end.
func (v *view) runGate() {
	watching, stopWatch := "", context.CancelFunc(func() {})
	defer func() { stopWatch() }()
	var tried gateTry
	for {
		v.mu.Lock()
		changed := v.changed
		want := ""
		if g := v.gate; g != nil && !g.rec.Open && g.rec.Key != "" {
			want = g.rec.Key
		}
		if want != watching {
			stopWatch()
			watching, stopWatch, v.cfg = want, func() {}, cfgState{key: want}
			if want != "" {
				stopWatch = v.startKeyWatch(want)
			}
		}
		try, rec, cmps, met, wake := v.gateMet(time.Now().UnixNano())
		v.mu.Unlock()
		sleep := time.Duration(0)
		if met && try != tried {
			if _, err := v.openGate(v.ctx, try.gateMod, rec, cmps); err != nil {
				v.b.lg.Debug("opening a queue's gate", zap.String("queue", v.k.queue), zap.Error(err))
				sleep = time.Second // etcd unreachable: the condition may still hold
			} else {
				tried = try
			}
		}
		if wake != 0 {
			d := max(time.Duration(wake-time.Now().UnixNano()), time.Millisecond)
			if sleep == 0 || d < sleep {
				sleep = d
			}
		}
		var t *time.Timer
		var timer <-chan time.Time
		if sleep > 0 {
			t = time.NewTimer(sleep)
			timer = t.C
		}
		select {
		case <-changed:
		case <-timer:
		case <-v.ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if v.ctx.Err() != nil {
			return
		}
	}
}

// gateMet reports whether the view's gate is closed and its condition
// holds, with what the opening transaction compares besides the gate's
// revision; else when (unix ns) it may come to hold by time alone, 0 for
// not. v.mu held.
func (v *view) gateMet(now int64) (try gateTry, rec gateRecord, cmps []clientv3.Cmp, met bool, wake int64) {
	g := v.gate
	if g == nil || g.rec.Open || g.rec.Manual {
		return try, rec, nil, false, 0
	}
	try, rec = gateTry{gateMod: g.mod, rev: v.rev, cfgMod: v.cfg.mod}, g.rec
	switch {
	case rec.Count > 0:
		// Ready messages with no reservation at all. Under a closed gate
		// nothing is reserved or buried (those transactions compare the
		// gate), and an ack needs a reservation: this count only grows
		// until the gate changes, so what held at the view's revision holds
		// at the commit, and the gate's revision is compare enough.
		n := 0
		for seq, e := range v.msgs {
			if _, reserved := v.res[seq]; reserved || e.m.Last {
				continue
			}
			if e.m.NotBefore > now {
				if wake == 0 || e.m.NotBefore < wake {
					wake = e.m.NotBefore
				}
				continue
			}
			n++
		}
		return try, rec, nil, n >= rec.Count, wake
	case rec.After != 0:
		// Acks open it in their own transaction (ackOpens); this is for a
		// message gone another way that is not a dead letter (deleted by
		// hand, or acked by an agent of an older version).
		if v.msgs[rec.After] != nil || v.dead[rec.After] {
			return try, rec, nil, false, 0
		}
		return try, rec, []clientv3.Cmp{
			clientv3.Compare(clientv3.Version(v.k.msg(rec.After)), "=", 0),
			clientv3.Compare(clientv3.Version(v.k.dead(rec.After)), "=", 0),
		}, true, 0
	case rec.Key != "":
		c := v.cfg
		if c.key != rec.Key || !c.known || !c.exists || rec.HasValue && c.sum != g.valueSum {
			return try, rec, nil, false, 0
		}
		return try, rec, []clientv3.Cmp{keyCmp(v.b.config+rec.Key, rec)}, true, 0
	}
	return try, rec, nil, false, 0
}

// openGate opens the gate if it is still the one seen and the condition's
// compares hold. It reports a revision of the gate key for the view to
// reach: the opening's, or, when the gate changed since it was seen (the
// opener of this or another agent opened it first, say), that change's; 0
// when the gate is as seen and the condition does not hold. Only a
// revision that changed a key of the view's range will ever be reached.
//
// An opening is the write of the client that set the gate, though the
// view's opener makes it: the data quota judges it at the client line
// (dataquota.ForClient), or a client's gates, opened by the agent, could
// add up past what the quota keeps for the agents.
func (v *view) openGate(ctx context.Context, gateMod int64, rec gateRecord, cmps []clientv3.Cmp) (int64, error) {
	ctx, cancel := context.WithTimeout(dataquota.ForClient(ctx), 10*time.Second)
	defer cancel()
	rec = rec.opened()
	cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(v.k.gate()), "=", gateMod))
	resp, err := v.b.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(v.k.gate(), encode(rec))).
		Else(clientv3.OpGet(v.k.gate(), clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && kvs[0].ModRevision > gateMod {
		return kvs[0].ModRevision, nil
	}
	return 0, nil
}

// openNow is a Reserve's last look before it answers that a closed gate
// holds the queue back. The opener runs beside the view and may not have
// acted yet on a condition that holds (the view was made by this very
// Reserve, or a key gate's watch has not read its key yet), so the
// Reserve tries the opening itself; a key gate's compare is its
// condition, so it is tried whatever the view knows of the key. The
// view's next pick waits until it has seen the opening, or the change of
// the gate that beat it.
func (v *view) openNow(ctx context.Context) error {
	v.mu.Lock()
	g := v.gate
	if g == nil || g.rec.Open || g.rec.Manual {
		v.mu.Unlock()
		return nil
	}
	mod, rec := g.mod, g.rec
	var cmps []clientv3.Cmp
	met := true
	if rec.Key != "" {
		cmps = []clientv3.Cmp{keyCmp(v.b.config+rec.Key, rec)}
	} else {
		_, _, cmps, met, _ = v.gateMet(time.Now().UnixNano())
	}
	v.mu.Unlock()
	if !met {
		return nil
	}
	rev, err := v.openGate(ctx, mod, rec, cmps)
	if rev > 0 {
		v.mu.Lock()
		v.want = max(v.want, rev)
		v.mu.Unlock()
	}
	return err
}

// keyCmp is a key gate's condition as etcd compares it: the config key
// (its full etcd key) holds the value, or exists.
func keyCmp(key string, rec gateRecord) clientv3.Cmp {
	if rec.HasValue {
		return clientv3.Compare(clientv3.Value(key), "=", string(rec.Value))
	}
	return clientv3.Compare(clientv3.Version(key), ">", 0)
}

// startKeyWatch starts watchKey; the function returned stops it.
func (v *view) startKeyWatch(key string) context.CancelFunc {
	ctx, cancel := context.WithCancel(v.ctx)
	go v.watchKey(ctx, key)
	return cancel
}

// watchKey keeps v.cfg current for a config key until ctx ends.
func (v *view) watchKey(ctx context.Context, key string) {
	full := v.b.config + key
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := v.followKey(ctx, key, full)
		if ctx.Err() != nil {
			return
		}
		v.b.lg.Debug("queue gate's key watch restarting", zap.String("queue", v.k.queue), zap.String("key", key), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (v *view) followKey(ctx context.Context, key, full string) error {
	got, err := v.b.cli.Get(ctx, full)
	if err != nil {
		return err
	}
	set := func(exists bool, value []byte, mod int64) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.cfg.key == key && mod >= v.cfg.mod {
			v.cfg = cfgState{key: key, known: true, exists: exists, sum: sha256.Sum256(value), mod: mod}
			v.signal()
		}
	}
	if len(got.Kvs) > 0 {
		set(true, got.Kvs[0].Value, got.Kvs[0].ModRevision)
	} else {
		set(false, nil, got.Header.Revision)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range v.b.cli.Watch(wctx, full, clientv3.WithRev(got.Header.Revision+1)) {
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			set(ev.Type == clientv3.EventTypePut, ev.Kv.Value, ev.Kv.ModRevision)
		}
	}
	return errors.New("watch ended")
}
