package queue

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// endpoint is the client URL of a one-member etcd started for this
// package's tests.
var endpoint string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "queue-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	e, url, err := etcdtest.Start(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting etcd:", err)
		os.Exit(1)
	}
	endpoint = url
	code := m.Run()
	e.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newClient is an etcd client closed with the test.
func newClient(t *testing.T) *clientv3.Client {
	t.Helper()
	return etcdtest.Client(t, endpoint)
}

// newBroker is a broker of its own client, as on an agent of its own,
// closed with the test.
func newBroker(t *testing.T, node string) *Broker {
	t.Helper()
	b := New(newClient(t), "/beacon/", WithNode(node))
	t.Cleanup(func() { b.Close() })
	return b
}

// queueName is a queue of the test's own.
func queueName(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano())
}
