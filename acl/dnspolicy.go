package acl

import (
	"strings"

	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/beaconhq/beacon/registry"
)

// DefaultDNSPolicy is dns-policy's default: DNS answers every service and
// every node, ACLs on or off. DNS carries no token, and a default deny
// would silently empty every answer (hashicorp/consul#3015).
const DefaultDNSPolicy = "service:*:read,node:*:read"

// DNSPolicy is what DNS answers under ACLs: service and node rules, read.
// A name it does not cover is answered as unknown (NXDOMAIN).
type DNSPolicy struct {
	policy *Policy
	all    bool // the default: no filtering at all
}

// ParseDNSPolicy parses dns-policy: comma-separated rules of kind service
// or node ("service:web-*:read,node:*:read"); "" is the default. The
// empty policy is spelled "none" (DNS answers nothing in the zone).
func ParseDNSPolicy(s string) (*DNSPolicy, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = DefaultDNSPolicy
	}
	if s == "none" {
		return &DNSPolicy{policy: NewPolicy(nil)}, nil
	}
	var rules []Rule
	for _, part := range strings.Split(s, ",") {
		r, err := ParseRule(strings.TrimSpace(part))
		if err != nil {
			return nil, rpcerr.Wrapf(ErrInvalidRule, "dns-policy: %v", err)
		}
		if r.Kind != KindService && r.Kind != KindNode {
			return nil, rpcerr.Wrapf(ErrInvalidRule, "dns-policy: rule %q: DNS answers only service and node names", part)
		}
		rules = append(rules, r)
	}
	p := &DNSPolicy{policy: NewPolicy(rules)}
	p.all = p.policy.Allows(Need{Kind: KindService, Prefix: true, Access: AccessRead}) &&
		p.policy.Allows(Need{Kind: KindNode, Prefix: true, Access: AccessRead})
	return p, nil
}

// ServiceVisible says whether DNS answers the service's names.
func (p *DNSPolicy) ServiceVisible(name string) bool {
	return p.all || p.policy.Allows(Need{Kind: KindService, Name: name, Access: AccessRead})
}

// NodeVisible says whether DNS answers the node's name.
func (p *DNSPolicy) NodeVisible(name string) bool {
	return p.all || p.policy.Allows(Need{Kind: KindNode, Name: name, Access: AccessRead})
}

// DNSCatalog is what the DNS server reads (dnsserver.Catalog).
type DNSCatalog interface {
	Service(name string) []*registry.Instance
	Node(name string) (cluster.NodeInfo, bool)
}

// FilterDNS is inner as the policy lets DNS see it. With the default
// policy it is inner itself: no cost per query.
func FilterDNS(inner DNSCatalog, p *DNSPolicy) DNSCatalog {
	if p == nil || p.all {
		return inner
	}
	return &filteredCatalog{inner: inner, p: p}
}

type filteredCatalog struct {
	inner DNSCatalog
	p     *DNSPolicy
}

func (f *filteredCatalog) Service(name string) []*registry.Instance {
	if !f.p.ServiceVisible(name) {
		return nil
	}
	return f.inner.Service(name)
}

func (f *filteredCatalog) Node(name string) (cluster.NodeInfo, bool) {
	if !f.p.NodeVisible(name) {
		return cluster.NodeInfo{}, false
	}
	return f.inner.Node(name)
}
