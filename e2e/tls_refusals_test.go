package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestTLSRefusesPlainAndForeignClients: with TLS on, the API, HTTP, a
// member's etcd client URL and a proxy's etcd endpoint each refuse a
// plain client, a TLS client without a certificate, and a client whose
// certificate another CA signed; the fleet's client certificate gets in.
// The unix socket stays plain.
func TestTLSRefusesPlainAndForeignClients(t *testing.T) {
	p := newFleetPKI(t)
	p.client("ops")
	other := newFleetPKI(t) // another fleet's CA, and a client of it
	other.client("ops")
	c := testcluster.New(t)
	n1 := tlsHost(c, p, "n1")
	n1.Start(p.flags("n1")...)
	waitReadyTLS(t, p, n1)
	px := tlsHost(c, p, "p1")
	px.Start(append([]string{"--role", "proxy", "--join", n1.ClientURL}, p.flags("p1")...)...)
	waitReadyTLS(t, p, px)

	fleet := p.clientTLS("ops")
	noCert := p.clientTLS("")
	foreign := p.clientTLS("") // trusts the fleet's CA, presents another CA's certificate
	foreign.Certificates = other.clientTLS("ops").Certificates

	// The gRPC API's TCP listener.
	apiCheck := func(creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient("passthrough:///"+n1.APIAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := apiCheck(credentials.NewTLS(fleet)); err != nil {
		t.Fatalf("API with the fleet's client certificate: %v", err)
	}
	for what, creds := range map[string]credentials.TransportCredentials{
		"plain": insecure.NewCredentials(), "TLS without a client certificate": credentials.NewTLS(noCert),
		"a client certificate from another CA": credentials.NewTLS(foreign),
	} {
		if err := apiCheck(creds); err == nil {
			t.Errorf("API: %s was let in", what)
		}
	}

	if err := testcluster.Eventually(10*time.Second, func() error {
		if !strings.Contains(n1.Log(), "refused a TLS connection to the API") {
			return errorString("no line about the refused API clients")
		}
		return nil
	}); err != nil {
		t.Errorf("%v in n1's log", err)
	}

	// The unix socket, owner-only, stays plain: the host's operator
	// needs no certificate on it.
	if out, stderr, err := testcluster.RunCLI(t, "members", "--agent", "unix:"+filepath.Join(n1.DataDir, "beacon.sock")); err != nil || !strings.Contains(out, "n1") {
		t.Errorf("beacon members over the unix socket, without TLS: %v: %s%s", err, out, stderr)
	}

	// HTTP.
	get := func(url string, tc *tls.Config) (int, error) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get("https://"+n1.HTTPAddr+"/health", fleet); err != nil || code != http.StatusOK {
		t.Fatalf("HTTP with the fleet's client certificate: %d, %v", code, err)
	}
	if code, err := get("http://"+n1.HTTPAddr+"/health", nil); err == nil && code == http.StatusOK {
		t.Error("HTTP: a plain client got /health")
	}
	for what, tc := range map[string]*tls.Config{"TLS without a client certificate": noCert, "a client certificate from another CA": foreign} {
		if code, err := get("https://"+n1.HTTPAddr+"/health", tc); err == nil {
			t.Errorf("HTTP: %s got %d", what, code)
		}
	}

	// etcd: the member's client URL and the proxy's endpoint.
	for _, a := range []*testcluster.Agent{n1, px} {
		if err := etcdPut(etcdTLS(t, a.ClientURL, fleet), "tls-ok"); err != nil {
			t.Fatalf("%s's etcd endpoint with the fleet's client certificate: %v", a.Name, err)
		}
		plainURL := strings.Replace(a.ClientURL, "https://", "http://", 1)
		if err := etcdPut(etcdTLS(t, plainURL, nil), "tls-plain"); err == nil {
			t.Errorf("%s's etcd endpoint: a plain client wrote", a.Name)
		}
		for what, tc := range map[string]*tls.Config{"TLS without a client certificate": noCert, "a client certificate from another CA": foreign} {
			if err := etcdPut(etcdTLS(t, a.ClientURL, tc), "tls-bad"); err == nil {
				t.Errorf("%s's etcd endpoint: %s wrote", a.Name, what)
			}
		}
	}
}

// TestTLSPeerFromAnotherCARefused: a member whose certificates another CA
// made, its own in order, cannot take part. Bootstrapped beside n1, n1
// refuses its peer connections and says so in its log; joining, it stops
// with a line that says the handshake failed on the certificate.
func TestTLSPeerFromAnotherCARefused(t *testing.T) {
	p := newFleetPKI(t)
	p.client("ops")
	other := newFleetPKI(t)
	c := testcluster.New(t)
	n1 := tlsHost(c, p, "n1")
	x2 := tlsHost(c, other, "x2")
	ic := testcluster.InitialCluster(n1, x2)
	n1.Start(append([]string{"--initial-cluster", ic}, p.flags("n1")...)...)
	x2.Start(append([]string{"--initial-cluster", ic}, other.flags("x2")...)...)
	err := testcluster.Eventually(readyWithin, func() error {
		if l := n1.Log(); strings.Contains(l, "rejected connection on peer endpoint") &&
			(strings.Contains(l, "unknown authority") || strings.Contains(l, "bad certificate") || strings.Contains(l, "unknown certificate")) {
			return nil
		}
		return errorString("n1 has not logged a refused peer certificate")
	})
	if err != nil {
		t.Fatalf("%v; log:\n%s", err, n1.Log())
	}
	x2.Kill()
	n1.Kill()

	// Joining a running fleet: the joiner stops, naming the handshake.
	m := tlsHost(c, p, "m1")
	m.Start(p.flags("m1")...)
	waitReadyTLS(t, p, m)
	y := tlsHost(c, other, "y1")
	y.Start(append([]string{"--join", m.ClientURL}, other.flags("y1")...)...)
	if err := y.WaitExit(90 * time.Second); err == nil {
		t.Fatal("an agent of another CA joined")
	}
	last := lastLine(y.Log())
	if !strings.Contains(last, "TLS with "+m.IP+":2379 refused") || !strings.Contains(last, "x509") {
		t.Fatalf("the joiner's last line does not say the TLS handshake failed on the certificate: %q", last)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
