package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := InitCA(dir, 0); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The files a CA and a host certificate are made of, owner-only keys, and
// nothing overwritten.
func TestInitAndIssue(t *testing.T) {
	dir := newPKI(t)
	if err := Issue(dir, CertOptions{Name: "n1", IPs: []string{"127.0.0.1", "::1"}, DNS: []string{"n1.example", "*.svc.example"}}); err != nil {
		t.Fatal(err)
	}
	cert, key := CertFiles(dir, "n1")
	for _, p := range []string{filepath.Join(dir, CAKeyFile), key} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	ca := filepath.Join(dir, CAFile)
	for _, h := range []string{"127.0.0.1", "::1", "n1.example", "a.svc.example"} {
		if err := Check(ca, cert, key, Server, h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if err := Check(ca, cert, key, Client); err != nil {
		t.Errorf("a peer certificate must serve as a client too: %v", err)
	}
	if err := InitCA(dir, 0); !errors.Is(err, ErrExists) {
		t.Errorf("a second init: %v, want ErrExists", err)
	}
	if err := Issue(dir, CertOptions{Name: "n1", IPs: []string{"127.0.0.2"}}); !errors.Is(err, ErrExists) {
		t.Errorf("a second n1: %v, want ErrExists", err)
	}
}

func TestIssueRefusesBadInput(t *testing.T) {
	dir := newPKI(t)
	for _, o := range []CertOptions{
		{Name: "", IPs: []string{"127.0.0.1"}},
		{Name: "../x", IPs: []string{"127.0.0.1"}},
		{Name: "n", IPs: []string{"300.1.1.1"}},
		{Name: "n", DNS: []string{"bad host"}},
		{Name: "n", DNS: []string{"a.*.b"}},
		{Name: "n"}, // a server certificate with no SAN
		{Name: "n", IPs: []string{"127.0.0.1"}, Days: -1},
		{Name: "n", IPs: []string{"127.0.0.1"}, Days: MaxDays + 1},
	} {
		if err := Issue(dir, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", o, err)
		}
	}
	if err := Issue(t.TempDir(), CertOptions{Name: "n", IPs: []string{"127.0.0.1"}}); err == nil || !strings.Contains(err.Error(), "beacon tls init") {
		t.Errorf("issuing without a CA: %v; want a hint to run beacon tls init", err)
	}
}

// Each classic failure is one line that names the file and the cause.
func TestCheckNamesTheCause(t *testing.T) {
	dir := newPKI(t)
	ca := filepath.Join(dir, CAFile)
	if err := Issue(dir, CertOptions{Name: "peer", IPs: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, CertOptions{Name: "cli", ClientOnly: true}); err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	if err := Issue(other, CertOptions{Name: "stranger", IPs: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	peer, peerKey := CertFiles(dir, "peer")
	cli, cliKey := CertFiles(dir, "cli")
	stranger, strangerKey := CertFiles(other, "stranger")
	expired, expiredKey := issueExpired(t, dir)
	for _, tc := range []struct {
		name         string
		cert, key    string
		use          Use
		host         []string
		want1, want2 string
	}{
		{"host missing from the SANs", peer, peerKey, Server, []string{"10.1.2.3"}, peer, "does not cover 10.1.2.3"},
		{"another CA", stranger, strangerKey, Client, nil, stranger, "not signed by the CA in " + ca},
		{"expired", expired, expiredKey, Server, []string{"127.0.0.1"}, expired, "expired on"},
		{"wrong key usage", cli, cliKey, Server, nil, cli, "not for server use"},
		{"key of another certificate", peer, cliKey, Server, nil, cliKey, "is not the key of"},
	} {
		err := Check(ca, tc.cert, tc.key, tc.use, tc.host...)
		if err == nil || !strings.Contains(err.Error(), tc.want1) || !strings.Contains(err.Error(), tc.want2) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line with %q and %q", tc.name, err, tc.want1, tc.want2)
		}
	}
}

// The certificates work in a real mutual TLS handshake, and one from
// another CA is refused by it.
func TestMutualTLSHandshake(t *testing.T) {
	dir := newPKI(t)
	if err := Issue(dir, CertOptions{Name: "srv", IPs: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := Issue(dir, CertOptions{Name: "cli", ClientOnly: true}); err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	if err := Issue(other, CertOptions{Name: "cli", ClientOnly: true}); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, CAFile))
	pool.AppendCertsFromPEM(caPEM)
	srvCert, err := tls.LoadX509KeyPair(CertFiles(dir, "srv"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	dial := func(certDir string) error {
		cc, err := tls.LoadX509KeyPair(CertFiles(certDir, "cli"))
		if err != nil {
			return err
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cc}})
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1)) // the server's verdict on our certificate
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil && strings.Contains(err.Error(), "EOF") {
			return nil // the server closed after a good handshake
		}
		return err
	}
	if err := dial(dir); err != nil {
		t.Fatalf("the fleet's client: %v", err)
	}
	if err := dial(other); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
}

// issueExpired writes a certificate of dir's CA that expired yesterday.
func issueExpired(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	ca, caKey, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := newSerial()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "old"},
		NotBefore: time.Now().AddDate(0, 0, -30), NotAfter: time.Now().AddDate(0, 0, -1),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = CertFiles(dir, "old")
	_ = os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	_ = os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}
