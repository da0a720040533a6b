package dnsserver

import (
	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/registry"
)

// Catalog is what the server reads to answer: the agent's in-memory
// registry.Catalog, or any other implementation that never blocks. The
// slices it returns are shared and are never modified here.
type Catalog interface {
	// Service returns every instance of a service (any status) sorted by
	// id, or nil when the catalog knows no instance of it.
	Service(name string) []*registry.Instance
	// Node returns a live agent's record.
	Node(name string) (cluster.NodeInfo, bool)
}

// The agent's catalog is one.
var _ Catalog = (*registry.Catalog)(nil)
