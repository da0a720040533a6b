package queue

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// MaxInFlightListed bounds Stats' in-flight listing, so that an answer
// stays well within a gRPC message; InFlightMore says when more are in
// flight.
const MaxInFlightListed = 1000

// InFlight is a message reserved with its visibility deadline ahead: who
// holds it, since when, and how far it has got.
type InFlight struct {
	ID         string
	Node       string // the agent it was reserved through
	Pid        uint32 // as its client declared it; 0 when none was given
	Reserved   time.Time
	Deadline   time.Time
	Deliveries int
	Progress   *Progress // its holder's last report; nil before the first
}

// StatsOption configures Stats.
type StatsOption func(*statsOpts)

type statsOpts struct{ inFlight bool }

// WithInFlight makes Stats list the in-flight messages too, with their
// workers' progress reports.
func WithInFlight() StatsOption { return func(o *statsOpts) { o.inFlight = true } }

// inFlightListing gathers the active reservations of one Stats read.
type inFlightListing struct {
	held []heldRes
}

type heldRes struct {
	seq    uint64
	r      reservation
	create int64
}

func (l *inFlightListing) add(seq uint64, r reservation, create int64) {
	l.held = append(l.held, heldRes{seq: seq, r: r, create: create})
}

// finish pairs each reservation with its message and its report. A
// report counts only if it names the reservation's create revision: one
// left by an earlier reservation of the message is not shown.
func (l *inFlightListing) finish(msgs map[uint64]meta, status []*mvccpb.KeyValue) ([]InFlight, bool) {
	reports := map[uint64]progressRecord{}
	for _, kv := range status {
		seq, ok := seqOf(kv.Key)
		var p progressRecord
		if ok && json.Unmarshal(kv.Value, &p) == nil {
			reports[seq] = p
		}
	}
	sort.Slice(l.held, func(i, j int) bool { return l.held[i].seq < l.held[j].seq })
	out := []InFlight{}
	more := false
	for _, h := range l.held {
		m, ok := msgs[h.seq]
		if !ok {
			continue // a reservation without its message: not in flight
		}
		if len(out) == MaxInFlightListed {
			more = true
			break
		}
		f := InFlight{ID: strconv.FormatUint(h.seq, 10), Node: h.r.Node, Pid: h.r.Pid,
			Reserved: unixTime(h.r.Reserved), Deadline: unixTime(h.r.Deadline), Deliveries: int(m.Deliveries)}
		if p, ok := reports[h.seq]; ok && p.Rev == h.create {
			f.Progress = &Progress{Percent: int(p.Percent), Message: p.Message, At: unixTime(p.At)}
		}
		out = append(out, f)
	}
	return out, more
}
