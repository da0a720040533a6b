package dnsserver

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The DNS server's own metrics (README, Metrics):
//
//	beacon_dns_queries_total{qtype, rcode}             counter
//	beacon_dns_query_duration_seconds{transport}       histogram
//
// Counting is on the hot path, which allocates nothing (fastpath.go), so it
// allocates nothing either, and it shares no memory between the UDP
// workers: each worker counts in a shard of its own (a fixed array of
// atomic counters per (qtype, rcode) pair, found by a switch, not a label
// lookup, and the histogram's buckets), which scrapes add up. With one
// shared counter the workers' cores would pass its cache line back and
// forth on every answer. A client cannot make series: a type outside the
// list is counted as "other", and so is an rcode. Scrapes report only the
// pairs that have counted.

// countedTypes are the qtypes counted apart, in label order; any other
// type is "other".
var countedTypes = [...]uint16{
	dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeTXT, dns.TypeSOA, dns.TypeNS, dns.TypePTR,
	dns.TypeCNAME, dns.TypeMX, dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeHTTPS, dns.TypeSVCB,
	dns.TypeCAA, dns.TypeDS, dns.TypeDNSKEY,
}

// countedRcodes are the rcodes counted apart, with their labels; any
// other is "other". (16 is BADVERS in a response's OPT; miekg/dns names it
// BADSIG, its meaning in a TSIG record.)
var countedRcodes = [...]int{
	dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
	dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers,
}

var rcodeLabels = [len(countedRcodes) + 1]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other"}

const (
	otherType  = len(countedTypes)  // the cell of every other qtype
	otherRcode = len(countedRcodes) // the cell of every other rcode
)

// Histogram buckets: a zone answer takes tens of microseconds, a
// forwarded one up to forwardTimeout per recursor.
var durationBuckets = [...]float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// transport indexes a shard's histograms.
type transport int

const (
	transportUDP transport = iota
	transportTCP
)

var transportLabels = [...]string{"udp", "tcp"}

// durationNanos are durationBuckets in nanoseconds.
var durationNanos = func() []int64 {
	out := make([]int64, len(durationBuckets))
	for i, b := range durationBuckets {
		out[i] = int64(b * 1e9)
	}
	return out
}()

// shard is where one goroutine counts (a UDP worker), or several that
// answer rarely (TCP connections, forwarded answers).
type shard struct {
	queries [otherType + 1][otherRcode + 1]atomic.Uint64
	hist    [len(transportLabels)]struct {
		buckets [len(durationBuckets) + 1]atomic.Uint64 // by bucket, not cumulative; the last is +Inf
		nanos   atomic.Uint64
	}
}

type metrics struct {
	queriesDesc, durationDesc *prometheus.Desc
	shared                    *shard // TCP and forwarded answers

	mu     sync.Mutex
	shards []*shard
}

func newMetrics() *metrics {
	m := &metrics{
		queriesDesc: prometheus.NewDesc("beacon_dns_queries_total",
			"DNS queries answered, by question type and response code.", []string{"qtype", "rcode"}, nil),
		durationDesc: prometheus.NewDesc("beacon_dns_query_duration_seconds",
			"Time from reading a DNS query to sending its answer.", []string{"transport"}, nil),
	}
	m.shared = m.newShard()
	return m
}

// newShard is a shard of the caller's own.
func (m *metrics) newShard() *shard {
	sh := new(shard) // a few KiB: shards never share a cache line
	m.mu.Lock()
	m.shards = append(m.shards, sh)
	m.mu.Unlock()
	return sh
}

// clockBase and clock time answers on the monotonic clock alone: the
// clock read per answer is most of what counting costs, and time.Now
// reads the wall clock too (time.Since reads only the monotonic one).
var clockBase = time.Now()

func clock() time.Duration { return time.Since(clockBase) }

// observe counts one answered query: pkt is the query as read, rcode the
// answer's, start the clock when the query was read.
func (sh *shard) observe(pkt []byte, rcode int, tr transport, start time.Duration) {
	sh.queries[typeCell(questionType(pkt))][rcodeCell(rcode)].Add(1)
	sh.time(tr, start)
}

// observeForwarded counts a forwarded query once its answer b is sent.
func (sh *shard) observeForwarded(f *forwardReq, b []byte, tr transport, start time.Duration) {
	t := uint16(0)
	if len(f.req.Question) > 0 {
		t = f.req.Question[0].Qtype
	}
	sh.queries[typeCell(t)][rcodeCell(wireRcode(b))].Add(1)
	sh.time(tr, start)
}

func (sh *shard) time(tr transport, start time.Duration) {
	d := int64(clock() - start)
	h := &sh.hist[tr]
	i := 0
	for i < len(durationNanos) && d > durationNanos[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.nanos.Add(uint64(max(d, 0)))
}

// typeCell is t's index in countedTypes, or otherType.
func typeCell(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeSRV:
		return 2
	}
	for i := 3; i < len(countedTypes); i++ {
		if countedTypes[i] == t {
			return i
		}
	}
	return otherType
}

func rcodeCell(rc int) int {
	for i, c := range countedRcodes {
		if c == rc {
			return i
		}
	}
	return otherRcode
}

// questionType is the type of a query's first question; 0 (counted as
// "other") when the packet has none that can be read.
func questionType(pkt []byte) uint16 {
	if len(pkt) < 12 || pkt[4] == 0 && pkt[5] == 0 {
		return 0
	}
	off := 12
	for off < len(pkt) {
		l := int(pkt[off])
		switch {
		case l == 0:
			off++
		case l&0xC0 == 0xC0: // a pointer ends the name
			off += 2
		default:
			off += 1 + l
			continue
		}
		if off+2 > len(pkt) {
			return 0
		}
		return uint16(pkt[off])<<8 | uint16(pkt[off+1])
	}
	return 0
}

// wireRcode is the rcode of a packed response, extended rcode included.
func wireRcode(b []byte) int {
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		if len(b) < 4 {
			return -1
		}
		return int(b[3] & 0xF)
	}
	return m.Rcode
}
