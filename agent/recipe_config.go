package agent

import (
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/config"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// startConfig serves the Config service: keys under <namespace>config/.
// Its watches live in their calls, so nothing to stop.
func startConfig(d RecipeDeps) func() {
	beaconpb.RegisterConfigServer(d.GRPC, config.NewService(config.NewStore(d.Client, d.Namespace)))
	return nil
}

// newTemplates returns the runner of the config file's templates: blocks,
// fed straight from this agent's etcd client (no gRPC hop). The agent
// calls Sync(cfg.Templates) once started and on every SIGHUP, and Close
// when it stops, before its etcd client closes.
func newTemplates(cli *clientv3.Client, namespace string, lg *zap.Logger) *config.Templates {
	return config.NewTemplates(config.NewStore(cli, namespace), config.WithLogger(lg.Named("templates")))
}
