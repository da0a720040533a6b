package agent

import (
	"github.com/beaconhq/beacon/session"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// RecipeDeps is what a coordination recipe (lock, election, queue,
// config) needs to serve on the agent's API.
type RecipeDeps struct {
	GRPC      *grpc.Server
	Client    *clientv3.Client
	Sessions  *session.Manager
	Namespace string
	Node      string
	Logger    *zap.Logger
	Metrics   prometheus.Registerer // the recipe's collectors go here
}

// recipes register their gRPC services; each recipe adds itself from a
// recipe_<name>.go file of its own.
var recipes []func(RecipeDeps)

func (a *Agent) registerRecipes() {
	d := RecipeDeps{GRPC: a.api.GRPC(), Client: a.node.LocalClient(), Sessions: a.sessions,
		Namespace: a.cfg.Namespace, Node: a.cfg.Name, Logger: a.lg, Metrics: a.metrics}
	for _, r := range recipes {
		r(d)
	}
}
