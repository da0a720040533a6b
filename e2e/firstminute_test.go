package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
)

// TestFirstMinute: `beacon agent` with no flags in an empty directory gives
// a one-node cluster on the default addresses.
func TestFirstMinute(t *testing.T) {
	dir := t.TempDir()
	c := testcluster.New(t)
	a := c.Host("default")
	a.HTTPAddr, a.APIAddr, a.ClientURL = "127.0.0.1:7601", "127.0.0.1:7600", "http://127.0.0.1:2379"
	a.DataDir = filepath.Join(dir, "beacon-data")
	a.StartIn(dir, "agent")
	a.WaitReady(20 * time.Second)

	if _, err := os.Stat(filepath.Join(dir, "beacon-data", "etcd", "member", "wal")); err != nil {
		t.Fatalf("no etcd data in ./beacon-data: %v", err)
	}

	// beacon status: one voter, and it leads.
	out, stderr, err := testcluster.RunCLI(t, "status", "-w", "json")
	if err != nil {
		t.Fatalf("beacon status: %v: %s", err, stderr)
	}
	var st struct {
		Leader    string `json:"leader"`
		HasQuorum bool   `json:"has_quorum"`
		Voters    int    `json:"voters"`
		Members   []struct {
			Name     string `json:"name"`
			Role     string `json:"role"`
			IsLeader bool   `json:"is_leader"`
			Healthy  bool   `json:"healthy"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status json: %v\n%s", err, out)
	}
	host, _ := os.Hostname()
	if st.Voters != 1 || len(st.Members) != 1 || !st.Members[0].IsLeader || st.Members[0].Role != "voter" ||
		!st.HasQuorum || st.Leader != host || st.Members[0].Name != host {
		t.Fatalf("want one healthy voter named %q that leads, got %s", host, out)
	}
	table, _, err := testcluster.RunCLI(t, "status")
	if err != nil || !strings.Contains(table, "quorum yes") || !strings.Contains(table, host) {
		t.Fatalf("beacon status table: %v\n%s", err, table)
	}

	// A plain etcd client puts and gets on 127.0.0.1:2379.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "hello", "world"); err != nil {
		t.Fatalf("put: %v", err)
	}
	got, err := cli.Get(ctx, "hello")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "world" {
		t.Fatalf("get: %v %v", got, err)
	}

	// The node record lives under the agent's lease.
	nodes, err := cli.Get(ctx, "/beacon/nodes/"+host)
	if err != nil || len(nodes.Kvs) != 1 || nodes.Kvs[0].Lease == 0 {
		t.Fatalf("nodes/%s: %v %v", host, nodes, err)
	}
	var rec map[string]string
	if err := json.Unmarshal(nodes.Kvs[0].Value, &rec); err != nil || rec["role"] != "member" || rec["version"] == "" || rec["started"] == "" {
		t.Fatalf("node record: %s (%v)", nodes.Kvs[0].Value, err)
	}

	// HTTP endpoints.
	for path, want := range map[string]string{
		"/health":  `"alive"`,
		"/ready":   `"ready"`,
		"/version": `"version"`,
		"/metrics": "etcd_server_has_leader 1",
	} {
		body := httpGet(t, "http://127.0.0.1:7601"+path)
		if !strings.Contains(body, want) {
			t.Errorf("%s: want %q in\n%.400s", path, want, body)
		}
	}
	// Our own gRPC metrics appear once the API has served a call.
	if body := httpGet(t, "http://127.0.0.1:7601/metrics"); !strings.Contains(body, `beacon_grpc_server_handled_total{grpc_code="OK",grpc_method="Status"`) {
		t.Errorf("/metrics lacks beacon_grpc_server_handled_total for Cluster.Status")
	}

	// gRPC health and reflection, over TCP and the unix socket.
	for _, target := range []string{"127.0.0.1:7600", "unix:" + filepath.Join(dir, "beacon-data", "beacon.sock")} {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "beacon.v1.Cluster"})
		if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("%s health: %v %v", target, hc, err)
		}
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		if !strings.Contains(strings.Join(names, ","), "beacon.v1.Cluster") {
			t.Fatalf("%s reflection lists %v", target, names)
		}
		conn.Close()
	}

	// SIGTERM stops it cleanly, and a restart resumes the same member.
	if err := a.Stop(); err != nil {
		t.Fatalf("SIGTERM: exit %v\n%s", err, a.Log())
	}
	a.StartIn(dir, "agent")
	a.WaitReady(20 * time.Second)
	got, err = cli.Get(ctx, "hello")
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("after restart: %v %v", got, err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
