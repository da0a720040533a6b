package faults

// The gated workload's checker: one queue's history from etcd, replayed
// revision by revision.

import (
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

type gatedMsg struct{ last bool }

// gatedReplay walks one queue's events in revision order, keeping its
// messages, reservations and dead letters as they were.
type gatedReplay struct {
	queue, first string
	count        int
	msgs         map[string]gatedMsg
	res, dead    map[string]bool
	bodies       map[string]string
	acked        map[string]bool
	open         bool
	openRev      int64
	reserves     int
}

func (r *gatedReplay) run(evs []*clientv3.Event) []string {
	var anomalies []string
	bad := func(format string, args ...any) {
		anomalies = append(anomalies, fmt.Sprintf("queue %s: ", r.queue)+fmt.Sprintf(format, args...))
	}
	for i := 0; i < len(evs); {
		rev := evs[i].Kv.ModRevision
		j := i
		for j < len(evs) && evs[j].Kv.ModRevision == rev {
			j++
		}
		group := evs[i:j]
		i = j
		deleted := map[string]bool{} // msg ids deleted in this revision
		for _, ev := range group {
			if kind, id, ok := gatedKey(r.queue, ev.Kv.Key); ok && kind == "msg" && ev.Type == clientv3.EventTypeDelete {
				deleted[id] = true
			}
		}
		// Judge the revision against the state before it.
		for _, ev := range group {
			kind, id, _ := gatedKey(r.queue, ev.Kv.Key)
			switch {
			case kind == "gate" && ev.Type == clientv3.EventTypePut && !r.open && strings.Contains(string(ev.Kv.Value), `"open":true`):
				r.open, r.openRev = true, rev
				if n := r.ready(); r.count > 0 && n < r.count {
					bad("the gate opened at revision %d with %d messages ready, under its count %d", rev, n, r.count)
				}
				if r.first != "" && r.has(r.first) && !deleted[r.first] {
					bad("the gate opened at revision %d before message %s was acked", rev, r.first)
				}
			case kind == "res" && ev.Type == clientv3.EventTypePut && ev.PrevKv == nil:
				r.reserves++
				if !r.open && (r.first == "" || id != r.first) {
					bad("message %s reserved at revision %d under the closed gate", id, rev)
				}
				if r.msgs[id].last {
					for other := range r.msgs {
						if other != id && !r.msgs[other].last {
							bad("the --last message %s reserved at revision %d while message %s was in the queue", id, rev, other)
							break
						}
					}
					if len(r.dead) > 0 {
						bad("the --last message %s reserved at revision %d with dead letters", id, rev)
					}
				}
			}
		}
		for _, ev := range group {
			r.apply(ev, deleted)
		}
	}
	return anomalies
}

func (r *gatedReplay) has(id string) bool { _, ok := r.msgs[id]; return ok }

// ready counts messages with no reservation, not --last.
func (r *gatedReplay) ready() int {
	n := 0
	for id, m := range r.msgs {
		if !r.res[id] && !m.last {
			n++
		}
	}
	return n
}

func (r *gatedReplay) apply(ev *clientv3.Event, deleted map[string]bool) {
	kind, id, ok := gatedKey(r.queue, ev.Kv.Key)
	if !ok {
		return
	}
	put := ev.Type == clientv3.EventTypePut
	switch kind {
	case "msg":
		if put {
			var m struct {
				Last bool `json:"last"`
			}
			_ = json.Unmarshal(ev.Kv.Value, &m)
			r.msgs[id] = gatedMsg{last: m.Last}
		} else {
			delete(r.msgs, id)
		}
	case "res":
		if put {
			r.res[id] = true
		} else {
			delete(r.res, id)
			if deleted[id] {
				r.acked[id] = true // an ack deletes the message and its reservation at once
			}
		}
	case "dead":
		if put {
			r.dead[id] = true
		} else {
			delete(r.dead, id)
		}
	case "body":
		if put {
			r.bodies[id] = string(ev.Kv.Value)
		}
	}
}

// gatedKey splits a queue key into its kind (msg, res, dead, body, gate…)
// and message id.
func gatedKey(queue string, key []byte) (kind, id string, ok bool) {
	rest, ok := strings.CutPrefix(string(key), gatedPrefix(queue))
	if !ok {
		return "", "", false
	}
	kind, seq, _ := strings.Cut(rest, "/")
	return kind, strings.TrimLeft(seq, "0"), true
}
