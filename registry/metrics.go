package registry

import (
	"time"

	"github.com/beaconhq/beacon/healthcheck"
	"github.com/beaconhq/beacon/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics is the catalog's collector for the agent's /metrics:
// beacon_catalog_instances, beacon_catalog_services and
// beacon_catalog_lag_seconds, read from the catalog at each scrape.
func (c *Catalog) Metrics() prometheus.Collector {
	return metrics.Collectors{
		metrics.Gauge("beacon_catalog_instances",
			"Service instances in this agent's catalog, whatever their status.",
			func() float64 { n, _ := c.counts(); return float64(n) }),
		metrics.Gauge("beacon_catalog_services",
			"Services with at least one instance in this agent's catalog.",
			func() float64 { _, n := c.counts(); return float64(n) }),
		metrics.Gauge("beacon_catalog_lag_seconds",
			"How far behind etcd the catalog may be: 0 once its watch has answered its latest progress check (one a second), else the age of the check unanswered; while the watch is down, the time since the catalog was last known current.",
			func() float64 { return c.lag.seconds(time.Now()) }),
	}
}

func (c *Catalog) counts() (instances, services int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.services {
		if n := len(e.byID); n > 0 {
			instances += n
			services++
		}
	}
	return instances, services
}

// checkStatuses are the values of beacon_health_checks' status label.
var checkStatuses = [...]string{healthcheck.StatusPassing, healthcheck.StatusWarning, healthcheck.StatusCritical}

// Metrics is the collector of this agent's registrations:
// beacon_health_checks{status} (the checks this agent runs, by their
// current status) and beacon_antientropy_repairs_total (instances
// anti-entropy wrote back or removed).
func (l *Local) Metrics() prometheus.Collector {
	return metrics.Collectors{
		&checkCollector{l: l, desc: prometheus.NewDesc("beacon_health_checks",
			"Health checks this agent runs, by their current status.", []string{"status"}, nil)},
		metrics.Counter("beacon_antientropy_repairs_total",
			"Instances anti-entropy wrote back to etcd or removed from it.",
			func() float64 { return float64(l.repairs.Load()) }),
	}
}

type checkCollector struct {
	l    *Local
	desc *prometheus.Desc
}

func (c *checkCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *checkCollector) Collect(ch chan<- prometheus.Metric) {
	var n [len(checkStatuses)]int
	c.l.mu.Lock()
	for _, r := range c.l.regs {
		if r.Check.Kind() == "" {
			continue
		}
		for i, s := range checkStatuses {
			if r.Instance.Status == s {
				n[i]++
			}
		}
	}
	c.l.mu.Unlock()
	for i, s := range checkStatuses {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[i]), s)
	}
}
