package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestReadWALSyncs(t *testing.T) {
	body := "# HELP etcd_disk_wal_fsync_duration_seconds x\n" +
		"etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 90\n" +
		"etcd_disk_wal_fsync_duration_seconds_sum 0.25\n" +
		"etcd_disk_wal_fsync_duration_seconds_count 100\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	got, ok := readWALSyncs(context.Background(), clientv3.Config{Endpoints: []string{srv.URL}})
	if !ok || got.count != 100 || got.seconds != 0.25 {
		t.Fatalf("readWALSyncs = %+v, %v; want 100 syncs, 0.25 s", got, ok)
	}
	load, ok := walLoadOf(walSyncs{count: 40, seconds: 0.1}, got, 30)
	if !ok || load.perOp != 2 || load.each != 2500*time.Microsecond {
		t.Fatalf("walLoadOf = %+v, %v; want 2 per op, 2.5ms each", load, ok)
	}
	if _, ok := walLoadOf(got, got, 30); ok {
		t.Fatal("no syncs between two readings gave a load")
	}
	body = "etcd_disk_wal_fsync_duration_seconds_count 100\n" // no sum
	if _, ok := readWALSyncs(context.Background(), clientv3.Config{Endpoints: []string{srv.URL}}); ok {
		t.Fatal("a reading without the sum was taken")
	}
}
