// Package barrier is a double barrier (Curator's DistributedDoubleBarrier,
// etcd's recipe.DoubleBarrier) on etcd leases: participants enter, wait
// until count of them have entered, work, and leave; whoever wants to can
// wait until all have left.
//
// Keys, under the agent's namespace:
//
//	barriers/<name>/open                      the round accepting participants, and the last trips
//	barriers/<name>/rounds/<round>/<lease>    a participant, bound to its lease
//
// What beacon adds over etcd's recipe is rounds and the binding to the
// agent's sessions: a participant whose process dies is removed at once,
// so nobody waits for it; a participant that arrives after a round
// tripped starts the next round rather than joining (or breaking) the
// one under way.
package barrier

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Barrier is one named barrier.
type Barrier struct {
	cli    *clientv3.Client
	name   string
	prefix string // <namespace>barriers/<name>/
	max    int    // participants of one round at most
}

// Option configures New.
type Option func(*Barrier)

// WithMaxParticipants bounds a round's participants (default
// DefaultMaxParticipants; n < 1 keeps it).
func WithMaxParticipants(n int) Option {
	return func(b *Barrier) {
		if n > 0 {
			b.max = n
		}
	}
}

// New returns the barrier name under namespace (e.g. "/beacon/").
func New(cli *clientv3.Client, namespace, name string, opts ...Option) (*Barrier, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b := &Barrier{cli: cli, name: name, prefix: namespace + "barriers/" + name + "/", max: DefaultMaxParticipants}
	for _, o := range opts {
		o(b)
	}
	return b, nil
}

// Name is the barrier's name.
func (b *Barrier) Name() string { return b.name }

// Prefix is the key prefix of everything the barrier keeps, with its
// trailing '/'.
func (b *Barrier) Prefix() string { return b.prefix }

func (b *Barrier) openKey() string      { return b.prefix + "open" }
func (b *Barrier) roundsPrefix() string { return b.prefix + "rounds/" }
func (b *Barrier) roundPrefix(r int64) string {
	return b.roundsPrefix() + strconv.FormatInt(r, 10) + "/"
}

// Key is the key of the participant with lease in round r.
func (b *Barrier) Key(r int64, lease clientv3.LeaseID) string {
	return fmt.Sprintf("%s%x", b.roundPrefix(r), int64(lease))
}

// Info is what a participant's key holds: who it is and the count it
// waits for. It never holds a session id (the secret that proves
// ownership); the key's last segment, the lease id, names the session.
type Info struct {
	Node  string `json:"node,omitempty"`
	Pid   int64  `json:"pid,omitempty"`
	Count int    `json:"count"`
}

// Participant is one key of a round.
type Participant struct {
	Info
	Key   string
	Lease clientv3.LeaseID
	Rev   int64 // create revision: the order of arrival
}

func (p Participant) String() string {
	// A value written by another client may hold anything: messages
	// print no control characters.
	who := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return '?'
		}
		return r
	}, p.Node)
	if who == "" {
		who = fmt.Sprintf("lease %x", int64(p.Lease))
	}
	if p.Pid > 0 {
		return fmt.Sprintf("%s (pid %d)", who, p.Pid)
	}
	return who
}

func participantOf(kv *mvccpb.KeyValue) Participant {
	p := Participant{Key: string(kv.Key), Lease: clientv3.LeaseID(kv.Lease), Rev: kv.CreateRevision}
	_ = json.Unmarshal(kv.Value, &p.Info) // a value written by hand: no info, count 0 (never matches)
	return p
}

// Trip is how a round ended its wait: the round's count, and the create
// revision of its count-th participant. The round's members are its keys
// created at or before Cutoff; those created after it enter the next
// round instead.
type Trip struct {
	Round  int64 `json:"round"`
	Count  int   `json:"count"`
	Cutoff int64 `json:"cutoff"`
}

// maxTrips is how many past trips the open key remembers, for a
// participant whose watch broke (compaction) and reads the state anew.
const maxTrips = 8

// openRecord is the open key's value: the round accepting participants
// and the last trips. A missing key is round 1 with no trips.
type openRecord struct {
	Round int64  `json:"round"`
	Trips []Trip `json:"trips,omitempty"`
	mod   int64  // the key's mod revision; 0 when missing
}

func parseOpen(kvs []*mvccpb.KeyValue) openRecord {
	if len(kvs) == 0 {
		return openRecord{Round: 1}
	}
	var rec openRecord
	if err := json.Unmarshal(kvs[0].Value, &rec); err != nil || rec.Round < 1 {
		rec = openRecord{Round: 1}
	}
	rec.mod = kvs[0].ModRevision
	return rec
}

// trip is the trip of round r, if the record remembers it.
func (o openRecord) trip(r int64) (Trip, bool) {
	for _, t := range o.Trips {
		if t.Round == r {
			return t, true
		}
	}
	return Trip{}, false
}

// next is the record after round o.Round trips with t.
func (o openRecord) next(t Trip) openRecord {
	trips := append(append([]Trip(nil), o.Trips...), t)
	if len(trips) > maxTrips {
		trips = trips[len(trips)-maxTrips:]
	}
	return openRecord{Round: o.Round + 1, Trips: trips}
}

func (o openRecord) value() string {
	b, _ := json.Marshal(o)
	return string(b)
}

// describe lists participants for messages: "a (pid 12), b (pid 40)".
func describe(ps []Participant) string {
	if len(ps) == 0 {
		return "none"
	}
	sorted := append([]Participant(nil), ps...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Rev < sorted[j].Rev })
	parts := make([]string, len(sorted))
	for i, p := range sorted {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}
