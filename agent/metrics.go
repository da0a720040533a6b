package agent

import (
	"net/http"
	"strings"

	"github.com/beaconhq/beacon/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// metricsHandler serves /metrics: the process's registry (Go, process,
// the API's gRPC metrics and the packages' process-wide gauges, and
// etcd's, which etcd registers there whatever the role) filtered by role,
// and the agent's own registry of its parts' collectors (README, Metrics).
func (a *Agent) metricsHandler() http.Handler {
	g := prometheus.Gatherers{roleGatherer{g: prometheus.DefaultGatherer, drop: notServedBy(a.node.Role())}, a.metrics}
	// Instrumented as promhttp.Handler was (promhttp_metric_handler_*).
	return promhttp.InstrumentMetricHandler(prometheus.DefaultRegisterer,
		promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

// notServedBy says which of etcd's metric families a role does not have.
// etcd's packages register all of them in every binary that links them:
// on a proxy, etcd_server_has_leader 0 and a WAL that never syncs would
// read as an unhealthy member; on a member, the grpc-proxy's counters
// stay 0 because it runs none.
func notServedBy(role cluster.Role) func(name string) bool {
	return func(name string) bool {
		etcd, proxy := strings.HasPrefix(name, "etcd_"), strings.HasPrefix(name, "etcd_grpc_proxy_")
		switch role {
		case cluster.RoleMember:
			return proxy
		case cluster.RoleProxy:
			return etcd && !proxy
		}
		return etcd
	}
}

// roleGatherer leaves out the families drop names.
type roleGatherer struct {
	g    prometheus.Gatherer
	drop func(name string) bool
}

func (r roleGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := r.g.Gather()
	kept := mfs[:0]
	for _, mf := range mfs {
		if !r.drop(mf.GetName()) {
			kept = append(kept, mf)
		}
	}
	return kept, err
}
