package dnsserver

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/beaconhq/beacon/registry"
	"github.com/miekg/dns"
)

// A pool is what answers for a service (and tag) draw from: its healthy
// instances with a usable address, grouped by priority, with the weights
// ready for sampling. It is built once per version of the service's
// instance list, so that a query costs O(k log n) for k records out of n
// instances, not a pass over all n (the catalog is sized for 100k).
type pool struct {
	list   []*registry.Instance // the version it was built from
	tagged bool                 // the tag names an instance, healthy or not ("" always does)
	tags   map[string]struct{}  // without a tag: every tag of the service, healthy or not
	size   int                  // members in all groups
	groups []group              // by ascending priority
	// targets holds, for instance pools, each member's SRV target in
	// wire form, so that the fast path copies rather than encodes.
	targets []byte
}

type group struct {
	members []member
	uniform bool      // every weight equal: draw by index
	cum     []float64 // weights' running sums, when not uniform
}

type member struct {
	in   *registry.Instance // for an address: the first instance on it
	addr netip.Addr
	w    float64
	prio int
	// The SRV target <id>.<service>.service.<zone> in wire form is
	// pool.targets[tOff:tOff+tLen]; tLen 0: left to the general way.
	tOff int32
	tLen uint8
}

// target is m's SRV target in wire form, nil when it has none.
func (p *pool) target(m *member) []byte {
	if m.tLen == 0 {
		return nil
	}
	return p.targets[m.tOff : m.tOff+int32(m.tLen)]
}

// What a pool holds: instances (SRV, TXT), or the distinct IPv4 or IPv6
// addresses of the instances (A, AAAA), each with the sum of their
// weights and the best of their priorities, so that an address shared by
// many instances appears once and a rare family is not crowded out.
type poolKind uint8

const (
	poolInstances poolKind = iota
	poolIPv4
	poolIPv6
)

func poolKindOf(qtype uint16) poolKind {
	switch qtype {
	case dns.TypeA:
		return poolIPv4
	case dns.TypeAAAA:
		return poolIPv6
	}
	return poolInstances
}

// maxPools bounds the pools kept; past it the cache starts over.
const maxPools = 4096

// asyncPoolSize: a pool over more instances than this is rebuilt by one
// goroutine in the background, while queries go on drawing from the
// version before it. For 100k instances a build takes tens of ms; a
// query should not wait for it, nor every worker build the same pool at
// once. The answers lag the catalog by one build, far less than a TTL.
const asyncPoolSize = 4096

type poolKey struct {
	service, tag string
	kind         poolKind
}

// poolCache is read on every query and written once per version of a
// service: a plain map behind a read-write lock, whose reads allocate
// nothing (a sync.Map would box every key).
type poolCache struct {
	mu       sync.RWMutex
	m        map[poolKey]*pool
	building map[poolKey]struct{} // large pools being rebuilt in the background
}

// pool returns the pool of list, the current instances of service,
// building it when list is a version not seen yet. Lists are never
// modified in place (the Catalog contract), so the identity of the slice
// says whether it changed.
//
// A tag that names nothing in the service gets a pool that says so and is
// not kept: names made up by the thousand cost a map lookup each and
// evict nothing.
func (h *handler) pool(service, tag string, kind poolKind, list []*registry.Instance) *pool {
	if tag != "" {
		// A tag unknown to a stale pool (one being rebuilt) may be new:
		// a pool of its own, built now, says whether it names anything.
		if base := h.pool(service, "", poolInstances, list); !hasKey(base.tags, tag) {
			if sameList(base.list, list) {
				return &pool{}
			}
			return h.buildPool(service, list, tag, kind)
		}
	}
	key := poolKey{service, tag, kind}
	h.pools.mu.RLock()
	p := h.pools.m[key]
	h.pools.mu.RUnlock()
	switch {
	case p != nil && sameList(p.list, list):
		return p
	case p != nil && len(list) > asyncPoolSize:
		h.rebuildInBackground(key, list, p)
		return p
	}
	p = h.buildPool(service, list, tag, kind)
	h.storePool(key, p)
	return p
}

// rebuildInBackground builds key's pool of list in a goroutine, unless
// one is at it already or as many builds run as there are CPUs (after a
// change, the next query tries again). The new pool replaces stale only:
// a pool built meanwhile from a newer list is not set back.
func (h *handler) rebuildInBackground(key poolKey, list []*registry.Instance, stale *pool) {
	h.pools.mu.Lock()
	if _, busy := h.pools.building[key]; busy || len(h.pools.building) >= runtime.GOMAXPROCS(0) {
		h.pools.mu.Unlock()
		return
	}
	if h.pools.building == nil {
		h.pools.building = make(map[poolKey]struct{})
	}
	h.pools.building[key] = struct{}{}
	h.pools.mu.Unlock()
	h.builds.Add(1)
	go func() {
		defer h.builds.Done()
		var p *pool
		defer func() {
			_ = recover() // a bug here must not take the agent down; the stale pool stays
			h.pools.mu.Lock()
			defer h.pools.mu.Unlock()
			delete(h.pools.building, key)
			if cur, ok := h.pools.m[key]; p != nil && (cur == stale || !ok) {
				h.storePoolLocked(key, p)
			}
		}()
		p = h.buildPool(key.service, list, key.tag, key.kind)
	}()
}

func (h *handler) storePool(key poolKey, p *pool) {
	h.pools.mu.Lock()
	defer h.pools.mu.Unlock()
	h.storePoolLocked(key, p)
}

func (h *handler) storePoolLocked(key poolKey, p *pool) {
	if _, ok := h.pools.m[key]; !ok && len(h.pools.m) >= maxPools || h.pools.m == nil {
		h.pools.m = make(map[poolKey]*pool)
	}
	h.pools.m[key] = p
}

func hasKey(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}

func sameList(a, b []*registry.Instance) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (h *handler) buildPool(service string, list []*registry.Instance, tag string, kind poolKind) *pool {
	p := &pool{list: list, tagged: tag == ""}
	if tag == "" {
		p.tags = map[string]struct{}{}
	}
	var members []member
	if tag == "" {
		members = make([]member, 0, len(list))
	}
	var byAddr map[netip.Addr]int // kind IPv4, IPv6: index in members
	var suffix []byte             // kind instances: <service>.service.<zone> in wire form
	if kind != poolInstances {
		byAddr = map[netip.Addr]int{}
	} else {
		suffix = h.targetSuffix(service)
		p.targets = make([]byte, 0, len(list)*(8+len(suffix)))
	}
	for _, in := range list {
		if tag == "" {
			for _, t := range in.Tags {
				p.tags[strings.ToLower(t)] = struct{}{}
			}
		} else {
			if !hasTag(in, tag) {
				continue
			}
			p.tagged = true
		}
		if !in.Healthy(h.warn) {
			continue
		}
		addr, err := netip.ParseAddr(in.Address)
		if err != nil {
			continue // a target that would not resolve is left out
		}
		m := member{in: in, addr: addr.Unmap(), w: float64(max1(in.Weight)), prio: in.Priority}
		switch kind {
		case poolIPv4, poolIPv6:
			if m.addr.Is4() != (kind == poolIPv4) {
				continue
			}
			if i, ok := byAddr[m.addr]; ok {
				members[i].w += m.w
				members[i].prio = min(members[i].prio, m.prio)
				continue
			}
			byAddr[m.addr] = len(members)
		}
		if kind == poolInstances {
			p.targets, m.tOff, m.tLen = appendTarget(p.targets, suffix, in.ID)
		}
		members = append(members, m)
	}
	p.size = len(members)
	slices.SortStableFunc(members, func(a, b member) int { return a.prio - b.prio })
	for len(members) > 0 {
		n := 1
		for n < len(members) && members[n].prio == members[0].prio {
			n++
		}
		g := group{members: members[:n:n], uniform: true}
		for _, m := range g.members {
			if m.w != g.members[0].w {
				g.uniform = false
				break
			}
		}
		if !g.uniform {
			g.cum = make([]float64, n)
			sum := 0.0
			for i, m := range g.members {
				sum += m.w
				g.cum[i] = sum
			}
		}
		p.groups = append(p.groups, g)
		members = members[n:]
	}
	return p
}

// targetSuffix is <service>.service.<zone> in wire form, nil when it
// does not pack.
func (h *handler) targetSuffix(service string) []byte {
	b := make([]byte, 256)
	n, err := dns.PackDomainName(service+".service."+h.zone, b, 0, nil, false)
	if err != nil {
		return nil
	}
	return b[:n]
}

// appendTarget packs the SRV target of instance id onto arena: the
// offset and length of the name, or length 0 when the fast path must
// leave the instance to the general way. That is when id is not one
// plain label (nearly every id is): an id with a dot can end with another
// id, and then the general way's packer compresses one glue owner into
// the other's target, which the fast path does not reproduce. The id is
// copied in front of suffix: no name is made as a string, and a pool
// over 100k instances is built without 100k allocations.
func appendTarget(arena, suffix []byte, id string) ([]byte, int32, uint8) {
	off := len(arena)
	if suffix == nil || !plainLabel(id) || 1+len(id)+len(suffix) > 255 {
		return arena, 0, 0
	}
	arena = append(append(append(arena, byte(len(id))), id...), suffix...)
	return arena, int32(off), uint8(len(arena) - off)
}

// plainLabel reports whether s is one DNS label that needs no escaping.
func plainLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// drawScratch is memory a draw may reuse from one query to the next,
// and its source of randomness: the global one, unless a test fixes it.
type drawScratch struct {
	chosen []int
	keyed  []keyedIndex
	rng    *rand.Rand
}

func (sc *drawScratch) intN(n int) int {
	if sc.rng != nil {
		return sc.rng.IntN(n)
	}
	return rand.IntN(n)
}

func (sc *drawScratch) float64() float64 {
	if sc.rng != nil {
		return sc.rng.Float64()
	}
	return rand.Float64()
}

func (sc *drawScratch) expFloat64() float64 {
	if sc.rng != nil {
		return sc.rng.ExpFloat64()
	}
	return rand.ExpFloat64()
}

type keyedIndex struct {
	key float64
	i   int
}

// draw appends up to k members to out in answer order: by priority, and
// within a priority shuffled by weight as RFC 2782 says, each next one
// drawn with probability weight/(sum of the weights left). sc, when not
// nil, lends its memory.
func (p *pool) draw(k int, out []*member, sc *drawScratch) []*member {
	if sc == nil {
		sc = new(drawScratch)
	}
	start := len(out)
	for i := range p.groups {
		if len(out)-start >= k {
			break
		}
		out = p.groups[i].draw(out, k-(len(out)-start), sc)
	}
	return out
}

func (g *group) draw(out []*member, k int, sc *drawScratch) []*member {
	m := len(g.members)
	if m <= 4*k || m <= 32 {
		return g.drawAll(out, k, sc)
	}
	// Few out of many: draw by weight and redraw what was drawn already,
	// which is the same law as drawing from what is left. For what fits
	// a UDP message a list finds repeats without allocating; the k of a
	// TCP message (up to 4097) takes a set.
	chosen := sc.chosen[:0]
	var seen map[int]struct{}
	if k > 64 {
		seen = make(map[int]struct{}, k)
	}
	total := 0.0
	if !g.uniform {
		total = g.cum[m-1]
	}
	for tries := 0; len(chosen) < k; tries++ {
		if tries > 16*k+64 { // a few weights dwarf the rest: go the long way
			sc.chosen = chosen
			return g.drawAll(out[:len(out)-len(chosen)], k, sc)
		}
		var i int
		if g.uniform {
			i = sc.intN(m)
		} else {
			u := sc.float64() * total
			i = min(sort.Search(m, func(j int) bool { return g.cum[j] > u }), m-1)
		}
		if seen != nil {
			if _, dup := seen[i]; dup {
				continue
			}
			seen[i] = struct{}{}
		} else if slices.Contains(chosen, i) {
			continue
		}
		chosen = append(chosen, i)
		out = append(out, &g.members[i])
	}
	sc.chosen = chosen
	return out
}

// drawAll orders the whole group by keys E/weight (E exponential), which
// is the same law as drawing one by one (Efraimidis–Spirakis), and keeps
// the k first.
func (g *group) drawAll(out []*member, k int, sc *drawScratch) []*member {
	keyed := slices.Grow(sc.keyed[:0], len(g.members))[:len(g.members)]
	sc.keyed = keyed
	for i := range g.members {
		keyed[i] = keyedIndex{sc.expFloat64() / g.members[i].w, i}
	}
	slices.SortFunc(keyed, func(a, b keyedIndex) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return a.i - b.i
	})
	for _, x := range keyed[:min(k, len(keyed))] {
		out = append(out, &g.members[x.i])
	}
	return out
}
