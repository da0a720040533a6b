package queue

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxQueueSeries bounds the queue label of beacon_queue_messages: the
// queues with the most messages are named, the rest are summed under
// queue="other", so that clients asking about many queue names cannot
// make as many series.
const MaxQueueSeries = 64

// otherQueues labels the queues beyond MaxQueueSeries (a queue named
// "other" shares the series with them).
const otherQueues = "other"

// deadCountTimeout bounds the read of the dead letters' counts a scrape
// makes.
const deadCountTimeout = 2 * time.Second

// queueStates are the values of the state label.
var queueStates = [...]string{"ready", "inflight", "delayed", "dead"}

// Metrics is the broker's collector for the agent's /metrics:
// beacon_queue_messages{queue, state} of each queue this agent has a live
// view of (one that a Reserve or Wait on this agent uses, or used within
// the last minute): ready, inflight (reserved, the reservation's
// deadline ahead) and delayed from the view, without reading etcd, and
// dead from one count-only read of etcd for all of them.
func (b *Broker) Metrics() prometheus.Collector {
	return &queueCollector{b: b, desc: prometheus.NewDesc("beacon_queue_messages",
		"Messages of the queues this agent's consumers use, by state (at most 64 queues named, the rest summed as queue=\"other\").",
		[]string{"queue", "state"}, nil)}
}

type queueCollector struct {
	b    *Broker
	desc *prometheus.Desc
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.b.viewCounts(time.Now().UnixNano())
	if len(counts) == 0 {
		return
	}
	c.b.countDead(counts)
	slices.SortFunc(counts, func(x, y queueCount) int {
		if d := cmp.Compare(y.total(), x.total()); d != 0 {
			return d
		}
		return cmp.Compare(x.queue, y.queue)
	})
	if len(counts) > MaxQueueSeries {
		other := queueCount{queue: otherQueues, deadKnown: true}
		for _, q := range counts[MaxQueueSeries:] {
			for i := range q.n {
				other.n[i] += q.n[i]
			}
			other.deadKnown = other.deadKnown && q.deadKnown
		}
		counts = append(counts[:MaxQueueSeries], other)
	}
	for _, q := range counts {
		for i, state := range queueStates {
			if state == "dead" && !q.deadKnown {
				continue // etcd did not answer: no figure rather than a wrong one
			}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(q.n[i]), q.queue, state)
		}
	}
}

// queueCount is one queue's messages by state, in queueStates' order.
type queueCount struct {
	queue     string
	n         [len(queueStates)]int
	deadKnown bool
}

func (q queueCount) total() int { return q.n[0] + q.n[1] + q.n[2] + q.n[3] }

// viewCounts reads every live view.
func (b *Broker) viewCounts(now int64) []queueCount {
	b.mu.Lock()
	views := make([]*view, 0, len(b.views.byName))
	for _, v := range b.views.byName {
		views = append(views, v)
	}
	b.mu.Unlock()
	out := make([]queueCount, 0, len(views))
	for _, v := range views {
		q := queueCount{queue: v.k.queue}
		v.mu.Lock()
		for seq, e := range v.msgs {
			switch r, ok := v.res[seq]; {
			case ok && r.r.Deadline > now:
				q.n[1]++
			case e.m.NotBefore > now:
				q.n[2]++
			default:
				q.n[0]++
			}
		}
		v.mu.Unlock()
		out = append(out, q)
	}
	return out
}

// countDead fills in the dead letters of each queue, in transactions of
// at most 64 count-only reads (etcd takes 128 operations in one).
func (b *Broker) countDead(counts []queueCount) {
	ctx, cancel := context.WithTimeout(b.ctx, deadCountTimeout)
	defer cancel()
	for start := 0; start < len(counts); start += 64 {
		part := counts[start:min(start+64, len(counts))]
		ops := make([]clientv3.Op, len(part))
		for i, q := range part {
			ops[i] = clientv3.OpGet(b.keys(q.queue).deadPrefix(), clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		}
		resp, err := b.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return
		}
		for i := range part {
			part[i].n[3] = int(resp.Responses[i].GetResponseRange().Count)
			part[i].deadKnown = true
		}
	}
}
