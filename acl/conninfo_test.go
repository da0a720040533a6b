package acl

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// Over a TLS listener (the agent's: tls.NewListener, then gRPC), Bootstrap
// is let in with a client certificate of the CA, and refused without one:
// ConnCredentials let the gate see what the listener verified.
func TestBootstrapWithClientCertificate(t *testing.T) {
	dir := t.TempDir()
	if err := pki.InitCA(dir, 1); err != nil {
		t.Fatal(err)
	}
	if err := pki.Issue(dir, pki.CertOptions{Name: "n1", IPs: []string{"127.0.0.1"}, Days: 1}); err != nil {
		t.Fatal(err)
	}
	if err := pki.Issue(dir, pki.CertOptions{Name: "ops", ClientOnly: true, Days: 1}); err != nil {
		t.Fatal(err)
	}
	files := func(name string) *pki.Files {
		cert, key := pki.CertFiles(dir, name)
		f, err := pki.FilesOf(dir+"/"+pki.CAFile, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	stc, err := files("n1").ServerConfig("h2")
	if err != nil {
		t.Fatal(err)
	}
	stc.ClientAuth = tls.VerifyClientCertIfGiven // a token or a certificate

	ns := testNamespace(t)
	cli := testEtcd(t)
	gate := NewGate(true, ns)
	srv := grpc.NewServer(grpc.Creds(ConnCredentials()), grpc.ChainUnaryInterceptor(gate.Unary), grpc.ChainStreamInterceptor(gate.Stream))
	rt, err := Start(ctxT(t), gate, srv, cli, ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(tls.NewListener(l, stc)) }()
	t.Cleanup(srv.Stop)

	dialTLS := func(withCert bool) beaconpb.ACLClient {
		ctc, err := files("ops").ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		if !withCert {
			ctc.Certificates = nil
		}
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(ctc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return beaconpb.NewACLClient(conn)
	}
	_, err = dialTLS(false).Bootstrap(ctxT(t), &beaconpb.ACLBootstrapRequest{})
	wantCode(t, "bootstrap over TLS without a certificate", err, codes.PermissionDenied, "client certificate")
	resp, err := dialTLS(true).Bootstrap(ctxT(t), &beaconpb.ACLBootstrapRequest{})
	if err != nil || resp.Secret == "" {
		t.Fatalf("bootstrap with the operator's certificate: %v", err)
	}
	// A certificate is no token: other calls still need one.
	_, err = dialTLS(true).TokenList(ctxT(t), &beaconpb.ACLTokenListRequest{})
	wantCode(t, "TokenList with a certificate and no token", err, codes.Unauthenticated, "needs a token")
}
