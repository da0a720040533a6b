package dnsserver

import (
	"slices"
	"strings"
	"sync"

	"github.com/beaconhq/beacon/cluster"
	"github.com/beaconhq/beacon/registry"
)

// memCatalog is a Catalog held in memory for tests: the same contract as
// registry.Catalog (lists sorted by id, shared and never modified: every
// change builds a new list).
type memCatalog struct {
	mu       sync.RWMutex
	services map[string][]*registry.Instance
	nodes    map[string]cluster.NodeInfo
}

func newMemCatalog() *memCatalog {
	return &memCatalog{services: map[string][]*registry.Instance{}, nodes: map[string]cluster.NodeInfo{}}
}

func (c *memCatalog) Service(name string) []*registry.Instance {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.services[name]
}

func (c *memCatalog) Node(name string) (cluster.NodeInfo, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nodes[strings.ToLower(name)]
	return n, ok
}

// put adds or replaces an instance; weight and status get their defaults.
func (c *memCatalog) put(in registry.Instance) {
	if in.Weight == 0 {
		in.Weight = 1
	}
	if in.Status == "" {
		in.Status = registry.StatusPassing
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.services[in.Service]
	list := make([]*registry.Instance, 0, len(old)+1)
	for _, o := range old {
		if o.ID != in.ID {
			list = append(list, o)
		}
	}
	list = append(list, &in)
	slices.SortFunc(list, func(a, b *registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	c.services[in.Service] = list
}

func (c *memCatalog) remove(service, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var list []*registry.Instance
	for _, o := range c.services[service] {
		if o.ID != id {
			list = append(list, o)
		}
	}
	if len(list) == 0 {
		delete(c.services, service)
		return
	}
	c.services[service] = list
}

func (c *memCatalog) putNode(n cluster.NodeInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[strings.ToLower(n.Name)] = n
}
