// Command resolve calls a gRPC service by its beacon name: the beacon:///
// resolver watches the service's healthy instances through the local agent
// and gRPC balances over them.
//
// By itself it is a whole round trip on one host with an agent running: it
// serves gRPC's health service on a loopback port, registers that server
// with the agent as "greeter", and calls it through beacon:///greeter.
// A tag in the target is registered and resolved alike. With
// --serve=false it only calls: a gRPC service that others registered.
//
//	go run ./examples/resolve
//	go run ./examples/resolve --target beacon:///greeter?tag=v2
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func main() {
	agent := flag.String("agent", "", "agent API address (default $BEACON_AGENT or 127.0.0.1:7600)")
	target := flag.String("target", "beacon:///greeter", "beacon:///SERVICE[?tag=T]")
	serve := flag.Bool("serve", true, "serve and register the target's service here first")
	flag.Parse()

	if *serve {
		// The registration lives in this client's session: it goes when
		// the program exits, however it exits.
		c, err := serveAndRegister(*agent, *target)
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
	}

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
		log.Fatalf("calling %s: %v", *target, err)
	}
	fmt.Println(resp.Status)
}

// serveAndRegister serves gRPC's health service on a loopback port and
// registers it with the agent under the target's service name (and tag).
func serveAndRegister(agent, target string) (*client.Client, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "beacon" {
		return nil, fmt.Errorf("--target %q is not beacon:///SERVICE[?tag=T]", target)
	}
	service := strings.TrimPrefix(u.Path, "/")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()

	c, err := client.New(agent)
	if err != nil {
		return nil, err
	}
	in := &beaconpb.Instance{Service: service, Address: "127.0.0.1", Port: uint32(lis.Addr().(*net.TCPAddr).Port)}
	if tag := u.Query().Get("tag"); tag != "" {
		in.Tags = []string{tag}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := c.Register(ctx, in, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("registering %s: %w", service, err)
	}
	fmt.Printf("serving and registered %s %s:%d\n", reg.Id, reg.Address, reg.Port)
	return c, nil
}
