// Package acl is beacon's access control: tokens with rules by kind and
// name prefix, kept in etcd and cached by a watch; the authoriser and the
// gRPC interceptors that enforce them on the agent API; the ACL gRPC
// service; the DNS policy; and etcd's own users and roles for the agents.
// See README.md.
package acl

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/beaconhq/beacon/internal/rpcerr"
)

// Kind is what a rule governs.
type Kind string

// The kinds of DESIGN.md. Operator covers the cluster (Members, Status,
// Leave, RemoveMember: name "cluster"), the ACLs themselves (name "acl")
// and snapshots (name "snapshot").
const (
	KindService  Kind = "service"
	KindNode     Kind = "node"
	KindLock     Kind = "lock"
	KindElection Kind = "election"
	KindQueue    Kind = "queue"
	KindConfig   Kind = "config"
	KindOperator Kind = "operator"
)

// Kinds lists every kind, in DESIGN.md's order.
var Kinds = []Kind{KindService, KindNode, KindLock, KindElection, KindQueue, KindConfig, KindOperator}

// Access is read or write; write includes read.
type Access int

// Accesses, ordered: a rule grants every access up to its own.
const (
	AccessNone Access = iota
	AccessRead
	AccessWrite
)

func (a Access) String() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	}
	return "none"
}

// MaxPatternLen bounds a rule's pattern (config keys are the longest names).
const MaxPatternLen = 512

// Rule is one KIND:PATTERN:ACCESS.
type Rule struct {
	Kind Kind
	// Name is the pattern without its trailing '*'.
	Name string
	// Prefix is true when the pattern ended in '*': the rule covers
	// every name that starts with Name.
	Prefix bool
	Access Access
}

// String is the rule as it was written (canonical form).
func (r Rule) String() string {
	p := r.Name
	if r.Prefix {
		p += "*"
	}
	return fmt.Sprintf("%s:%s:%s", r.Kind, p, r.Access)
}

// Covers reports whether the rule's pattern matches name.
func (r Rule) Covers(name string) bool {
	if r.Prefix {
		return strings.HasPrefix(name, r.Name)
	}
	return name == r.Name
}

// ParseRule parses KIND:PATTERN:ACCESS. PATTERN may hold ':' (the first
// and the last ':' split the rule); it is a name, or a prefix ending in
// '*' ('*' alone: every name). The error names the part that is wrong.
func ParseRule(s string) (Rule, error) {
	first, last := strings.IndexByte(s, ':'), strings.LastIndexByte(s, ':')
	if first < 0 || first == last {
		return Rule{}, rpcerr.Wrapf(ErrInvalidRule, "rule %q: want KIND:PATTERN:ACCESS, e.g. lock:batch-*:write", s)
	}
	kind, pattern, access := s[:first], s[first+1:last], s[last+1:]
	var r Rule
	switch k := Kind(kind); k {
	case KindService, KindNode, KindLock, KindElection, KindQueue, KindConfig, KindOperator:
		r.Kind = k
	default:
		return Rule{}, rpcerr.Wrapf(ErrInvalidRule, "rule %q: kind %q is not one of service, node, lock, election, queue, config, operator", s, kind)
	}
	switch access {
	case "read":
		r.Access = AccessRead
	case "write":
		r.Access = AccessWrite
	default:
		return Rule{}, rpcerr.Wrapf(ErrInvalidRule, "rule %q: access %q is not read or write (write includes read)", s, access)
	}
	if err := checkPattern(pattern); err != nil {
		return Rule{}, rpcerr.Wrapf(ErrInvalidRule, "rule %q: pattern %s", s, err)
	}
	r.Name, r.Prefix = strings.CutSuffix(pattern, "*")
	return r, nil
}

func checkPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("is empty: give a name, a prefix ending in '*', or '*'")
	case len(p) > MaxPatternLen:
		return fmt.Errorf("is %d bytes, more than %d", len(p), MaxPatternLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("is not valid UTF-8")
	case strings.IndexFunc(p, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0:
		return fmt.Errorf("%q holds a space or a control character", p)
	case strings.Contains(strings.TrimSuffix(p, "*"), "*"):
		return fmt.Errorf("%q has a '*' before its end: '*' only ends a prefix (batch-*)", p)
	}
	return nil
}

// ParseRules parses a token's rules. At least one is needed, and two rules
// of one kind and pattern are refused (which would win is not obvious).
func ParseRules(ss []string) ([]Rule, error) {
	if len(ss) == 0 {
		return nil, rpcerr.Wrapf(ErrInvalidRule, "no rules: give at least one KIND:PATTERN:ACCESS (--rule lock:batch-*:write)")
	}
	if len(ss) > MaxRules {
		return nil, rpcerr.Wrapf(ErrInvalidRule, "%d rules, more than %d", len(ss), MaxRules)
	}
	rules := make([]Rule, 0, len(ss))
	seen := map[string]string{}
	for _, s := range ss {
		r, err := ParseRule(s)
		if err != nil {
			return nil, err
		}
		key := r.String()
		key = key[:strings.LastIndexByte(key, ':')]
		if prev, dup := seen[key]; dup {
			return nil, rpcerr.Wrapf(ErrInvalidRule, "rules %q and %q govern the same names: keep one", prev, s)
		}
		seen[key] = s
		rules = append(rules, r)
	}
	return rules, nil
}

// MaxRules bounds a token's rules.
const MaxRules = 256

// managementRules are the bootstrap token's: write on every name of every
// kind.
func managementRules() []Rule {
	rs := make([]Rule, 0, len(Kinds))
	for _, k := range Kinds {
		rs = append(rs, Rule{Kind: k, Prefix: true, Access: AccessWrite})
	}
	return rs
}
