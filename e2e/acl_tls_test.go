package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/client"
	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TestACLTLSEveryHop: three members and a proxy with TLS on every hop and
// ACLs on (issue 9's "must show"). The operator bootstraps over TCP with
// the CA's client certificate; a client that brings a token and no
// certificate is let through the TLS listener and judged by its token;
// etcd refuses a client of the fleet's CA that has no etcd user (its CN
// names none); a registration on n2 is answered by the proxy's DNS; a
// scoped token takes its lock through the proxy and not another.
func TestACLTLSEveryHop(t *testing.T) {
	p := newFleetPKI(t)
	p.client("ops")
	c := testcluster.New(t)
	n1 := tlsHost(c, p, "n1")
	n1.Start(append(p.flags("n1"), "--acl")...)
	waitReadyTLS(t, p, n1)
	var agents []*testcluster.Agent
	for _, name := range []string{"n2", "n3", "p1"} {
		a := tlsHost(c, p, name)
		copyCredentials(t, n1, a)
		args := append(p.flags(name), "--acl", "--join", n1.ClientURL)
		if name == "p1" {
			args = append(args, "--role", "proxy")
		}
		a.Start(args...)
		waitReadyTLS(t, p, a)
		agents = append(agents, a)
	}
	n2, px := agents[0], agents[2]

	// Bootstrap over TCP: the CA's client certificate stands for the
	// operator (no token exists yet).
	out, stderr, err := tlsCLI(t, p, n1, "acl", "bootstrap", "-w", "json")
	if err != nil {
		t.Fatalf("beacon acl bootstrap over TLS with the ops certificate: %v: %s%s", err, out, stderr)
	}
	mgmt := secretOf(t, out)
	out, stderr, err = tlsCLI(t, p, n1, "members", "--token", mgmt)
	if err != nil || strings.Count(out, "voter") != 3 || !strings.Contains(out, "proxy") {
		t.Fatalf("beacon members: %v: %s%s", err, out, stderr)
	}
	// A certificate is not a token: any other call still needs one.
	if _, stderr, err := tlsCLI(t, p, n1, "members"); err == nil || !strings.Contains(stderr, "needs a token") {
		t.Errorf("beacon members with the certificate and no token: %v: %s", err, stderr)
	}

	out, stderr, err = tlsCLI(t, p, n1, "acl", "token", "create", "--token", mgmt, "--rule", "lock:batch-*:write", "-w", "json")
	if err != nil {
		t.Fatalf("token create: %v: %s", err, stderr)
	}
	batch := secretOf(t, out)
	out, stderr, err = tlsCLI(t, p, px, "lock", "batch-1", "--token", batch, "--", "echo", "ran through the proxy")
	if err != nil || !strings.Contains(out, "ran through the proxy") {
		t.Errorf("beacon lock batch-1 through the proxy: %v: %s%s", err, out, stderr)
	}
	_, stderr, err = tlsCLI(t, p, px, "lock", "payments", "--token", batch, "--", "true")
	if err == nil || !strings.Contains(stderr, "lock:payments:write") {
		t.Errorf("beacon lock payments with the batch token: %v: %s", err, stderr)
	}

	// A token-only client: TLS trusting the CA, no certificate of its own.
	tokenOnly := func(secret string) *client.Client {
		cl, err := client.New(n2.APIAddr, client.WithTLS(nil), client.WithToken(secret),
			client.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS("")))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := &beaconpb.Instance{Service: "web", Id: "n2-web-8080", Port: 8080}
	if _, err := tokenOnly("").Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: in}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Register without certificate or token: %v; want Unauthenticated", err)
	}
	if _, err := tokenOnly(mgmt).Registry.Register(ctx, &beaconpb.RegisterRequest{Instance: in}); err != nil {
		t.Fatalf("Register with a token and no certificate: %v", err)
	}
	waitDNS(t, px, "web.service.beacon", dns.TypeSRV, "n2's web on the proxy", has("8080 n2-web-8080.web.service.beacon."))

	// The data quota reads etcd's status as each agent's etcd user, over
	// TLS: a member its own member, the proxy the member it reaches.
	hc := &http.Client{Transport: bearerTransport{mgmt, &http.Transport{TLSClientConfig: p.clientTLS("ops")}}}
	for _, a := range []*testcluster.Agent{n2, px} {
		if err := testcluster.Eventually(10*time.Second, func() error {
			v, err := metricFrom(hc, "https://"+a.HTTPAddr, "beacon_data_quota_limit_bytes")
			if err != nil || v != 0.75*(2<<30) {
				return fmt.Errorf("beacon_data_quota_limit_bytes on %s: %v %v, want 75%% of etcd's 2 GiB", a.Name, v, err)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}

	// etcd over TLS: a certificate of the CA is no etcd user.
	for _, a := range []*testcluster.Agent{n2, px} {
		if err := etcdPut(etcdTLS(t, a.ClientURL, p.clientTLS("ops")), "/beacon/services/web/evil"); !etcdRefused(err) {
			t.Errorf("a put through %s with the ops certificate and no etcd user: %v; want it refused", a.Name, err)
		}
	}
}

// bearerTransport sends its secret with every request, as Prometheus
// does with a bearer token.
type bearerTransport struct {
	secret string
	next   http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.secret)
	return b.next.RoundTrip(r)
}

// secretOf is the secret of `beacon acl … -w json`'s output.
func secretOf(t *testing.T, out string) string {
	t.Helper()
	var tok aclToken
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("no secret in %q: %v", out, err)
	}
	return tok.Secret
}
