package acl

import (
	"errors"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rule
	}{
		{"lock:batch-*:write", Rule{Kind: KindLock, Name: "batch-", Prefix: true, Access: AccessWrite}},
		{"service:*:read", Rule{Kind: KindService, Prefix: true, Access: AccessRead}},
		{"config:app/db:read", Rule{Kind: KindConfig, Name: "app/db", Access: AccessRead}},
		{"config:a:b:write", Rule{Kind: KindConfig, Name: "a:b", Access: AccessWrite}},
		{"operator:acl:write", Rule{Kind: KindOperator, Name: "acl", Access: AccessWrite}},
	} {
		got, err := ParseRule(tc.in)
		if err != nil || got != tc.want || got.String() != tc.in {
			t.Errorf("ParseRule(%q) = %+v, %v (%s); want %+v", tc.in, got, err, got.String(), tc.want)
		}
	}
}

// A bad rule is INVALID_ARGUMENT naming the part that is wrong.
func TestParseRuleErrors(t *testing.T) {
	for _, tc := range []struct{ in, mention string }{
		{"", "KIND:PATTERN:ACCESS"},
		{"lock", "KIND:PATTERN:ACCESS"},
		{"lock:x", "KIND:PATTERN:ACCESS"},
		{"locks:x:write", `kind "locks"`},
		{"lock:x:admin", `access "admin"`},
		{"lock:x:", `access ""`},
		{"lock::write", "pattern is empty"},
		{"lock:a*b:write", "before its end"},
		{"lock:**:write", "before its end"},
		{"lock:a b:write", "space"},
		{"lock:a\x00:write", "control"},
		{"lock:" + strings.Repeat("x", MaxPatternLen+1) + ":write", "more than"},
		{"lock:\xff:write", "UTF-8"},
	} {
		_, err := ParseRule(tc.in)
		if !errors.Is(err, ErrInvalidRule) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseRule(%q): %v; want ErrInvalidRule mentioning %q", tc.in, err, tc.mention)
		}
		if st := status.Convert(rpcerr.From(err)); st.Code() != codes.InvalidArgument {
			t.Errorf("ParseRule(%q): code %v", tc.in, st.Code())
		}
	}
	if _, err := ParseRules(nil); !errors.Is(err, ErrInvalidRule) {
		t.Errorf("no rules: %v", err)
	}
	if _, err := ParseRules([]string{"lock:a*:read", "lock:a*:write"}); err == nil || !strings.Contains(err.Error(), "same names") {
		t.Errorf("duplicate rules: %v", err)
	}
}

func need(k Kind, name string, a Access) Need { return Need{Kind: k, Name: name, Access: a} }

func policyOf(t *testing.T, rules ...string) *Policy {
	t.Helper()
	rs, err := ParseRules(rules)
	if err != nil {
		t.Fatal(err)
	}
	return NewPolicy(rs)
}

func TestPolicy(t *testing.T) {
	p := policyOf(t, "lock:batch-*:write", "lock:*:read", "lock:batch-frozen:read", "config:app/*:write", "config:app/secret*:read")
	for _, tc := range []struct {
		n    Need
		want bool
	}{
		{need(KindLock, "batch-1", AccessWrite), true},
		{need(KindLock, "batch-1", AccessRead), true}, // write includes read
		{need(KindLock, "payments", AccessWrite), false},
		{need(KindLock, "payments", AccessRead), true},
		{need(KindLock, "batch-frozen", AccessWrite), false}, // the exact name is more specific
		{need(KindLock, "batch-frozen", AccessRead), true},
		{need(KindElection, "batch-1", AccessRead), false}, // default deny
		{need(KindConfig, "app/db", AccessWrite), true},
		{need(KindConfig, "app/secrets/k", AccessWrite), false}, // the longer prefix wins
		{need(KindConfig, "other", AccessRead), false},
		{Need{Kind: KindConfig, Name: "app/", Prefix: true, Access: AccessRead}, true},
		{Need{Kind: KindConfig, Name: "app/", Prefix: true, Access: AccessWrite}, false}, // app/secret* inside is read-only
		{Need{Kind: KindConfig, Name: "app/db/", Prefix: true, Access: AccessWrite}, true},
		{Need{Kind: KindConfig, Name: "", Prefix: true, Access: AccessRead}, false}, // not every key
		{Need{Kind: KindLock, Name: "", Prefix: true, Access: AccessRead}, true},
	} {
		if got := p.Allows(tc.n); got != tc.want {
			t.Errorf("Allows(%s) = %v; want %v", tc.n, got, tc.want)
		}
	}
	if !operatorPolicy.Allows(need(KindOperator, "cluster", AccessWrite)) {
		t.Error("the operator's policy refuses")
	}
}

// Every method of the API is mapped to its needs: a method left out
// would need operator:api:write, which is right for a new RPC but wrong
// for one of these.
func TestEveryMethodMapped(t *testing.T) {
	for _, full := range apiMethods() {
		if _, ok := methods[full]; !ok {
			t.Errorf("%s has no ACL mapping", full)
		}
	}
	if m := methodOf("/beacon.v1.Future/Thing"); m.needsOf("/beacon/", nil)[0].String() != "operator:api:write" {
		t.Errorf("an unknown method needs %v", m.needsOf("/beacon/", nil))
	}
	// A request of the wrong type (which gRPC never passes) needs the
	// operator rather than stopping the agent.
	if n := methodOf("/beacon.v1.Lock/Acquire").needsOf("/beacon/", "not a request"); n[0].String() != "operator:api:write" {
		t.Errorf("wrong request type needs %v", n)
	}
}
