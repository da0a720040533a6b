package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconhq/beacon/internal/testcluster"
	"github.com/beaconhq/beacon/pki"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// fleetPKI is a CA made with `beacon tls init` and the certificates made
// with `beacon tls cert`, as an operator makes them.
type fleetPKI struct {
	t   *testing.T
	dir string
}

func newFleetPKI(t *testing.T) *fleetPKI {
	t.Helper()
	p := &fleetPKI{t: t, dir: t.TempDir()}
	p.run("tls", "init", "--dir", p.dir)
	return p
}

func (p *fleetPKI) run(args ...string) {
	p.t.Helper()
	if _, stderr, err := testcluster.RunCLI(p.t, args...); err != nil {
		p.t.Fatalf("beacon %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
}

func (p *fleetPKI) ca() string { return filepath.Join(p.dir, pki.CAFile) }

// host issues a host certificate for the agent's address and 127.0.0.1
// (connections between loopback addresses come from 127.0.0.1, and etcd
// checks a peer's certificate against the address it connects from).
func (p *fleetPKI) host(name string, ips ...string) {
	p.t.Helper()
	args := []string{"tls", "cert", "--dir", p.dir, "--name", name}
	for _, ip := range ips {
		args = append(args, "--ip", ip)
	}
	p.run(args...)
}

func (p *fleetPKI) client(name string) {
	p.t.Helper()
	p.run("tls", "cert", "--dir", p.dir, "--name", name, "--client")
}

// flags are the TLS flags that name a certificate of this PKI.
func (p *fleetPKI) flags(name string) []string {
	cert, key := pki.CertFiles(p.dir, name)
	return []string{"--ca-file", p.ca(), "--cert-file", cert, "--key-file", key}
}

// clientTLS trusts this PKI's CA and presents certName's certificate
// ("" for none).
func (p *fleetPKI) clientTLS(certName string) *tls.Config {
	p.t.Helper()
	b, err := os.ReadFile(p.ca())
	if err != nil {
		p.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	tc := &tls.Config{RootCAs: pool}
	if certName != "" {
		pair, err := tls.LoadX509KeyPair(pki.CertFiles(p.dir, certName))
		if err != nil {
			p.t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc
}

// issueExpired writes NAME.pem and NAME-key.pem, signed by the CA, valid
// for ips, that expired a day ago (beacon tls cert cannot make one).
func (p *fleetPKI) issueExpired(name string, ips ...string) (notAfter time.Time) {
	p.t.Helper()
	ca, caKey, err := pki.LoadCA(p.dir)
	if err != nil {
		p.t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	notAfter = time.Now().AddDate(0, 0, -1).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().AddDate(0, 0, -30), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		p.t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key := pki.CertFiles(p.dir, name)
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return notAfter
}

// tlsHost is a host of c whose URLs are https, with a certificate of its
// own from p.
func tlsHost(c *testcluster.Cluster, p *fleetPKI, name string) *testcluster.Agent {
	a := c.Host(name)
	a.ClientURL = strings.Replace(a.ClientURL, "http://", "https://", 1)
	a.PeerURL = strings.Replace(a.PeerURL, "http://", "https://", 1)
	p.host(name, a.IP, "127.0.0.1")
	return a
}

// waitReadyTLS waits for /ready over mutual TLS, failing if the agent
// exits first.
func waitReadyTLS(t *testing.T, p *fleetPKI, a *testcluster.Agent) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: p.clientTLS("ops")}}
	defer hc.CloseIdleConnections()
	err := testcluster.Eventually(readyWithin, func() error {
		if a.Exited() {
			return fmt.Errorf("%s exited", a.Name)
		}
		resp, err := hc.Get("https://" + a.HTTPAddr + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s not ready over TLS: %v; log:\n%s", a.Name, err, a.Log())
	}
}

// tlsCLI runs a beacon command against a's API with the ops client
// certificate (the flags go before a "--" and the command after it).
func tlsCLI(t *testing.T, p *fleetPKI, a *testcluster.Agent, args ...string) (string, string, error) {
	t.Helper()
	flags := append([]string{"--agent", a.APIAddr}, p.flags("ops")...)
	cut := len(args)
	for i, arg := range args {
		if arg == "--" {
			cut = i
			break
		}
	}
	full := append(append(append([]string{}, args[:cut]...), flags...), args[cut:]...)
	return testcluster.RunCLI(t, full...)
}

// etcdTLS is an etcd client of url with tc.
func etcdTLS(t *testing.T, url string, tc *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 3 * time.Second, TLS: tc, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// etcdPut tries one write through cli.
func etcdPut(cli *clientv3.Client, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, key, "v")
	return err
}
