package acl

import (
	"errors"
	"testing"

	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/registry"
)

// staticCatalog answers every service and node: what FilterDNS hides is
// the policy's doing.
type staticCatalog struct{}

func (staticCatalog) Service(name string) []*registry.Instance {
	return []*registry.Instance{{Service: name, ID: "i1", Address: "127.0.0.9", Port: 80}}
}
func (staticCatalog) Node(name string) (cluster.NodeInfo, bool) {
	return cluster.NodeInfo{Name: name}, true
}

func TestDNSPolicyDefaultAnswersEverything(t *testing.T) {
	p, err := ParseDNSPolicy("")
	if err != nil {
		t.Fatal(err)
	}
	var inner DNSCatalog = staticCatalog{}
	if FilterDNS(inner, p) != inner {
		t.Error("the default policy wraps the catalog: it should cost nothing")
	}
	if !p.ServiceVisible("payments") || !p.NodeVisible("n1") {
		t.Error("the default policy hides names")
	}
}

func TestDNSPolicyFilters(t *testing.T) {
	p, err := ParseDNSPolicy("service:web-*:read, node:n1:read")
	if err != nil {
		t.Fatal(err)
	}
	c := FilterDNS(staticCatalog{}, p)
	if len(c.Service("web-1")) != 1 || c.Service("payments") != nil {
		t.Errorf("services: web-1 %v, payments %v", c.Service("web-1"), c.Service("payments"))
	}
	if _, ok := c.Node("n1"); !ok {
		t.Error("node n1 hidden")
	}
	if _, ok := c.Node("n2"); ok {
		t.Error("node n2 shown")
	}
	none, _ := ParseDNSPolicy("none")
	if FilterDNS(staticCatalog{}, none).Service("web-1") != nil {
		t.Error(`"none" answers a service`)
	}
	for _, bad := range []string{"lock:*:read", "service:*", "service:a*b:read"} {
		if _, err := ParseDNSPolicy(bad); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("ParseDNSPolicy(%q): %v", bad, err)
		}
	}
}
