package acl

import "strings"

// Need is what one call needs: access to a name of a kind, or, with
// Prefix, to every name that starts with Name (a Config.List of a
// prefix; Registry.List of every service is Name "" with Prefix).
type Need struct {
	Kind   Kind
	Name   string
	Prefix bool
	Access Access
}

// String names the need as a rule would: lock:payments:write.
func (n Need) String() string {
	return Rule{Kind: n.Kind, Name: n.Name, Prefix: n.Prefix, Access: n.Access}.String()
}

// Policy is a token's rules, ready to answer.
type Policy struct {
	byKind map[Kind][]Rule
	all    bool // the agent's operator (unix socket): everything
}

// NewPolicy builds the policy of rules.
func NewPolicy(rules []Rule) *Policy {
	p := &Policy{byKind: map[Kind][]Rule{}}
	for _, r := range rules {
		p.byKind[r.Kind] = append(p.byKind[r.Kind], r)
	}
	return p
}

// operatorPolicy allows everything: the caller on the owner-only socket.
var operatorPolicy = &Policy{all: true}

// Allows answers whether the policy grants n. The most specific rule that
// covers a name decides, as in Consul: an exact name beats any prefix, a
// longer prefix beats a shorter one. So `lock:*:write` with
// `lock:payments:read` leaves payments read-only. Nothing covering the
// name: denied (default deny).
func (p *Policy) Allows(n Need) bool {
	if p.all {
		return true
	}
	rules := p.byKind[n.Kind]
	if !n.Prefix {
		best, found := Rule{}, false
		for _, r := range rules {
			if r.Covers(n.Name) && (!found || moreSpecific(r, best)) {
				best, found = r, true
			}
		}
		return found && best.Access >= n.Access
	}
	// Every name under n.Name: a prefix rule must cover them all, and no
	// more specific rule inside them may grant less.
	best, found := Rule{}, false
	for _, r := range rules {
		if r.Prefix && strings.HasPrefix(n.Name, r.Name) && (!found || len(r.Name) > len(best.Name)) {
			best, found = r, true
		}
	}
	if !found || best.Access < n.Access {
		return false
	}
	for _, r := range rules {
		if strings.HasPrefix(r.Name, n.Name) && moreSpecific(r, best) && r.Access < n.Access {
			return false
		}
	}
	return true
}

// moreSpecific reports whether a beats b for a name both cover.
func moreSpecific(a, b Rule) bool {
	if a.Prefix != b.Prefix {
		return !a.Prefix
	}
	return len(a.Name) > len(b.Name)
}
