// Command register is a minimal service that registers itself with the
// beacon agent on its host for as long as it runs. Kill it — even with
// kill -9 — and every agent stops answering for it at once, because the
// registration lives in the process's session with the agent.
//
//	go run ./examples/register --name web --listen 127.0.0.1:8080
//	dig @127.0.0.1 -p 8600 web.service.beacon SRV
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"google.golang.org/protobuf/types/known/durationpb"
)

func main() {
	agent := flag.String("agent", "", "agent API address (default $BEACON_AGENT or 127.0.0.1:7600)")
	name := flag.String("name", "web", "service name")
	id := flag.String("id", "", "instance id (default chosen by the agent)")
	addr := flag.String("listen", "127.0.0.1:0", "address to serve HTTP on; its port is registered")
	tag := flag.String("tag", "", "a tag to register with")
	flag.Parse()

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		_ = http.Serve(lis, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "hello from %s\n", *name)
		}))
	}()
	host, port := lis.Addr().(*net.TCPAddr).IP.String(), lis.Addr().(*net.TCPAddr).Port

	c, err := client.New(*agent)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // closes the session: deregistered at once
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	in := &beaconpb.Instance{Service: *name, Id: *id, Address: host, Port: uint32(port)}
	if *tag != "" {
		in.Tags = []string{*tag}
	}
	reg, err := c.Register(ctx, in, &beaconpb.Check{Http: fmt.Sprintf("http://%s:%d/", host, port), Interval: durationpb.New(time.Second)})
	cancel()
	if err != nil {
		log.Fatalf("register: %v", err)
	}
	fmt.Printf("registered %s %s:%d\n", reg.Id, reg.Address, reg.Port)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
