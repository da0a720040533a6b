// Command resolve calls a gRPC service by its beacon name: the beacon:///
// resolver watches the service's healthy instances through the local agent
// and gRPC balances over them.
//
//	go run ./examples/resolve --target beacon:///greeter
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/beaconhq/beacon/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	agent := flag.String("agent", "", "agent API address (default $BEACON_AGENT or 127.0.0.1:7600)")
	target := flag.String("target", "beacon:///greeter", "beacon:///SERVICE[?tag=T]")
	flag.Parse()

	conn, err := grpc.NewClient(*target,
		grpc.WithResolvers(client.NewResolverBuilder(*agent)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Any gRPC service works; the standard health service is one every
	// server can offer.
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status)
}
