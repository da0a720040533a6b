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
	Config    *Config               // the agent's, for the recipes' limits
	Metrics   prometheus.Registerer // the recipe's collectors go here
}

// recipe is one coordination recipe: start registers its gRPC service and
// returns what stops what it runs in the background (nil: nothing).
type recipe struct {
	name  string
	start func(RecipeDeps) (stop func())
}

// recipes start in this order, once the sessions exist, and stop in the
// reverse order after the sessions have closed (what holders do on their
// way out still works) and before the etcd client closes, so that no
// recipe's watch or loop outlives what it reads.
// Each lives in a recipe_<name>.go file of its own.
var recipes = []recipe{
	{"lock", startLock},
	{"election", startElection},
	{"queue", startQueue},
	{"config", startConfig},
	{"barrier", startBarrier},
}

func (a *Agent) startRecipes() {
	d := RecipeDeps{GRPC: a.api.GRPC(), Client: a.cli, Sessions: a.sessions,
		Namespace: a.cfg.Namespace, Node: a.cfg.Name, Logger: a.lg, Config: &a.cfg, Metrics: a.metrics}
	for _, r := range recipes {
		if stop := r.start(d); stop != nil {
			a.recipeStops = append(a.recipeStops, stop)
		}
	}
}

// stopRecipes stops the recipes started, last first.
func (a *Agent) stopRecipes() {
	for i := len(a.recipeStops) - 1; i >= 0; i-- {
		a.recipeStops[i]()
	}
	a.recipeStops = nil
}
