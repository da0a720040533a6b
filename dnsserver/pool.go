package dnsserver

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

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

// candidate is an instance drawn for an answer, in answer order.
type candidate struct {
	in   *registry.Instance
	addr netip.Addr
}

// maxPools bounds the pools kept; past it the cache starts over.
const maxPools = 4096

type poolKey struct {
	service, tag string
	kind         poolKind
}

type poolCache struct {
	m sync.Map // poolKey → *pool
	n atomic.Int64
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
		if _, ok := h.pool(service, "", poolInstances, list).tags[tag]; !ok {
			return &pool{}
		}
	}
	key := poolKey{service, tag, kind}
	if v, ok := h.pools.m.Load(key); ok {
		if p := v.(*pool); sameList(p.list, list) {
			return p
		}
	}
	p := buildPool(list, tag, kind, h.warn)
	if _, loaded := h.pools.m.Swap(key, p); !loaded && h.pools.n.Add(1) > maxPools {
		h.pools.m.Clear()
		h.pools.n.Store(0)
	}
	return p
}

func sameList(a, b []*registry.Instance) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func buildPool(list []*registry.Instance, tag string, kind poolKind, warn bool) *pool {
	p := &pool{list: list, tagged: tag == ""}
	if tag == "" {
		p.tags = map[string]struct{}{}
	}
	var members []member
	var byAddr map[netip.Addr]int // kind IPv4, IPv6: index in members
	if kind != poolInstances {
		byAddr = map[netip.Addr]int{}
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
		if !in.Healthy(warn) {
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

// draw returns up to k members in answer order: by priority, and within a
// priority shuffled by weight as RFC 2782 says, each next one drawn with
// probability weight/(sum of the weights left).
func (p *pool) draw(k int) []candidate {
	out := make([]candidate, 0, min(k, p.size))
	for i := range p.groups {
		if len(out) >= k {
			break
		}
		out = p.groups[i].draw(out, k-len(out))
	}
	return out
}

func (g *group) draw(out []candidate, k int) []candidate {
	m := len(g.members)
	if m <= 4*k || m <= 32 {
		return g.drawAll(out, k)
	}
	// Few out of many: draw by weight and redraw what was drawn already,
	// which is the same law as drawing from what is left.
	chosen := make(map[int]struct{}, k)
	total := 0.0
	if !g.uniform {
		total = g.cum[m-1]
	}
	for tries := 0; len(chosen) < k; tries++ {
		if tries > 16*k+64 { // a few weights dwarf the rest: go the long way
			return g.drawAll(out[:len(out)-len(chosen)], k)
		}
		var i int
		if g.uniform {
			i = rand.IntN(m)
		} else {
			u := rand.Float64() * total
			i = min(sort.Search(m, func(j int) bool { return g.cum[j] > u }), m-1)
		}
		if _, dup := chosen[i]; dup {
			continue
		}
		chosen[i] = struct{}{}
		out = append(out, candidate{in: g.members[i].in, addr: g.members[i].addr})
	}
	return out
}

// drawAll orders the whole group by keys E/weight (E exponential), which
// is the same law as drawing one by one (Efraimidis–Spirakis), and keeps
// the k first.
func (g *group) drawAll(out []candidate, k int) []candidate {
	keyed := make([]struct {
		key float64
		i   int
	}, len(g.members))
	for i, m := range g.members {
		keyed[i].key, keyed[i].i = rand.ExpFloat64()/m.w, i
	}
	slices.SortFunc(keyed, func(a, b struct {
		key float64
		i   int
	}) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return a.i - b.i
	})
	for _, x := range keyed[:min(k, len(keyed))] {
		out = append(out, candidate{in: g.members[x.i].in, addr: g.members[x.i].addr})
	}
	return out
}
