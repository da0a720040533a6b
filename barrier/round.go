package barrier

import (
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// roundView is one participant's view of its round: the round's keys as
// etcd had them at the last revision applied.
type roundView struct {
	round int64
	keys  map[string]Participant
}

func newRoundView(round int64, kvs []*mvccpb.KeyValue) *roundView {
	v := &roundView{round: round, keys: map[string]Participant{}}
	for _, kv := range kvs {
		v.keys[string(kv.Key)] = participantOf(kv)
	}
	return v
}

// apply takes one watch event on a key of the round.
func (v *roundView) apply(ev *mvccpb.Event) {
	if ev.Type == mvccpb.DELETE {
		delete(v.keys, string(ev.Kv.Key))
		return
	}
	v.keys[string(ev.Kv.Key)] = participantOf(ev.Kv)
}

// sorted is the round's participants in order of arrival.
func (v *roundView) sorted() []Participant {
	out := make([]Participant, 0, len(v.keys))
	for _, p := range v.keys {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rev < out[j].Rev })
	return out
}

// count is the round's count: the count of its first participant (a
// key without one, written by hand, is skipped). 0 when the round is
// empty.
func (v *roundView) count() int {
	for _, p := range v.sorted() {
		if p.Count > 0 {
			return p.Count
		}
	}
	return 0
}

// matching are the participants that wait for the round's count, in
// order of arrival: the ones the round counts.
func (v *roundView) matching() []Participant {
	n := v.count()
	var out []Participant
	for _, p := range v.sorted() {
		if p.Count == n && n > 0 {
			out = append(out, p)
		}
	}
	return out
}

// full returns the round's trip once count participants that agree on
// the count are in it.
func (v *roundView) full() (Trip, bool) {
	n := v.count()
	m := v.matching()
	if n == 0 || len(m) < n {
		return Trip{}, false
	}
	return Trip{Round: v.round, Count: n, Cutoff: m[n-1].Rev}, true
}

// members are the round's participants that are in the trip t.
func (v *roundView) members(t Trip) []Participant {
	var out []Participant
	for _, p := range v.sorted() {
		if p.Count == t.Count && p.Rev <= t.Cutoff {
			out = append(out, p)
		}
	}
	return out
}
