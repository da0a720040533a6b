// Package queue is beacon's durable FIFO queue recipe on etcd: named
// queues, at-least-once delivery, reservations bound to the consumer's
// session, visibility timeouts, dead letters, deduplication and delayed
// messages. The Broker holds the logic on clientv3; Service serves it over
// gRPC. See README.md for the key layout and the reasoning behind it.
package queue

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Limits and defaults.
const (
	MaxPayload           = 1 << 20 // bytes
	MaxNameLen           = 128     // bytes
	MaxDuration          = 24 * time.Hour
	DefaultVisibility    = 30 * time.Second
	DefaultDedupWindow   = 5 * time.Minute
	DefaultMaxDeliveries = 5
	MaxMaxDeliveries     = 1000
)

// Broker runs the queues of one etcd cluster for one agent. Its methods are
// safe for concurrent use; several brokers (one per agent) may serve the
// same queues at once.
type Broker struct {
	cli    *clientv3.Client
	root   string // "<namespace>queues/"
	config string // "<namespace>config/": the keys gates wait for
	node   string
	lg     *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	views     views
	producers map[string]*producer
	leases    *dedupLeases
}

// Option configures New.
type Option func(*Broker)

// WithLogger sets the logger (default: none).
func WithLogger(lg *zap.Logger) Option { return func(b *Broker) { b.lg = lg } }

// WithMaxViews bounds the queues this agent follows at once (see
// views.go); default DefaultMaxViews. n < 1 is taken as 1.
func WithMaxViews(n int) Option { return func(b *Broker) { b.views.max = max(1, n) } }

// WithNode names this agent in the reservations it writes, for operators
// reading etcd.
func WithNode(name string) Option { return func(b *Broker) { b.node = name } }

// New returns a broker keeping its queues under namespace + "queues/" (the
// namespace is "/beacon/" on an agent).
func New(cli *clientv3.Client, namespace string, opts ...Option) *Broker {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		cli: cli, root: namespace + "queues/", config: namespace + "config/", lg: zap.NewNop(),
		ctx: ctx, cancel: cancel, views: newViews(DefaultMaxViews), producers: map[string]*producer{},
	}
	for _, o := range opts {
		o(b)
	}
	b.leases = newDedupLeases(cli)
	return b
}

// Close stops the broker's watches; calls in progress fail. The client
// stays open.
func (b *Broker) Close() error {
	b.cancel()
	return nil
}

// keys is the layout of one queue, all under <namespace>queues/<queue>/:
//
//	seq          the last sequence number handed out (decimal)
//	msg/<seq>    a message's metadata (JSON): enqueued, not-before, deliveries
//	body/<seq>   its payload, written once
//	res/<seq>    its reservation, if any (JSON: deadline, owner: a hash of the
//	             receipt's key, node), under the
//	             consumer's session lease when it has one
//	dead/<seq>   a dead letter's metadata; its body stays at body/<seq>
//	dedup/<id>   the message id of a dedup id, under a lease of the window
//	status/<seq> the progress report of its reservation (progress.go), under
//	             the reservation's lease; outside the view's range
//	gate         the queue's gate (JSON: its condition, open or not), if any
//
// <seq> is zero-padded to 20 digits, so key order is FIFO order.
type keys struct {
	queue string
	root  string
}

func (b *Broker) keys(queue string) keys { return keys{queue: queue, root: b.root + queue + "/"} }

func (k keys) seq() string                 { return k.root + "seq" }
func (k keys) msg(seq uint64) string       { return k.root + "msg/" + seqString(seq) }
func (k keys) body(seq uint64) string      { return k.root + "body/" + seqString(seq) }
func (k keys) res(seq uint64) string       { return k.root + "res/" + seqString(seq) }
func (k keys) dead(seq uint64) string      { return k.root + "dead/" + seqString(seq) }
func (k keys) dedup(id string) string      { return k.root + "dedup/" + id }
func (k keys) msgPrefix() string           { return k.root + "msg/" }
func (k keys) resPrefix() string           { return k.root + "res/" }
func (k keys) deadPrefix() string          { return k.root + "dead/" }
func (k keys) gate() string                { return k.root + "gate" }
func (k keys) viewRange() (string, string) { return k.root + "msg/", k.root + "res0" } // msg/… and res/…

// followRange is what a view follows: dead/…, dedup/… (ignored), gate,
// msg/… and res/…, in key order.
func (k keys) followRange() (string, string) { return k.root + "dead/", k.root + "res0" }

func seqString(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// seqOf parses the sequence number at the end of a msg/, res/, body/ or
// dead/ key.
func seqOf(key []byte) (uint64, bool) {
	if len(key) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(key[len(key)-20:]), 10, 64)
	return n, err == nil
}
