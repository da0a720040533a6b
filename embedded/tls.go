package embedded

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/beaconhq/beacon/pki"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// applyTLS makes the member's peer and client URLs mutual TLS under the
// host's files: a peer or client must present a certificate signed by the
// CA. The same certificate serves and, toward the other members, dials.
func applyTLS(cfg *embed.Config, f *pki.Files) {
	if f == nil {
		return
	}
	info := transport.TLSInfo{
		CertFile:       f.Cert,
		KeyFile:        f.Key,
		TrustedCAFile:  f.CA,
		ClientCertAuth: true,
	}
	cfg.ClientTLSInfo = info
	cfg.PeerTLSInfo = info
	cfg.ClientAutoTLS, cfg.PeerAutoTLS = false, false
}

// debugPaths are what etcd serves under /debug/ on its client URL:
// expvar's /debug/vars (the full command line and memory stats), always;
// pprof with EnablePprof or at log level debug; request traces at log
// level debug.
var debugPaths = []string{
	"/debug/", "/debug/vars", "/debug/requests", "/debug/events",
	"/debug/pprof/", "/debug/pprof/profile", "/debug/pprof/symbol", "/debug/pprof/cmdline",
	"/debug/pprof/trace", "/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/pprof/threadcreate",
	"/debug/pprof/block", "/debug/pprof/mutex",
}

// applyDebug serves etcd's debug endpoints only when asked. etcd mounts
// user handlers ahead of its own and skips its pprof paths that are taken,
// so a 404 on each path shuts all of them.
func applyDebug(cfg *embed.Config, enable bool) {
	if enable {
		cfg.EnablePprof = true
		return
	}
	cfg.EnablePprof = false
	if cfg.UserHandlers == nil {
		cfg.UserHandlers = map[string]http.Handler{}
	}
	for _, p := range debugPaths {
		cfg.UserHandlers[p] = http.NotFoundHandler()
	}
}

// clientTLS sets the agent's etcd client to dial with the CA and the
// host's certificate as client certificate.
func clientTLS(c *clientv3.Config, f *pki.Files) error {
	if f == nil {
		return nil
	}
	tc, err := f.ClientConfig()
	if err != nil {
		return err
	}
	c.TLS = tc
	return nil
}

// proxyServerOptions serve the proxy's etcd-compatible endpoint with mutual
// TLS, like a member's client URL.
func proxyServerOptions(f *pki.Files) ([]grpc.ServerOption, error) {
	if f == nil {
		return nil, nil
	}
	tc, err := f.ServerConfig("h2")
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, nil
}

// tlsRefusal tells why a TLS connection to the first of urls that refuses
// one fails: clientv3 reports only a deadline when every handshake fails,
// and "context deadline exceeded" says nothing of a certificate from
// another CA. nil when plain, or when a handshake succeeds.
func tlsRefusal(ctx context.Context, f *pki.Files, urls []string) error {
	if f == nil {
		return nil
	}
	tc, err := f.ClientConfig()
	if err != nil {
		return err
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue
		}
		cfg := tc.Clone()
		cfg.ServerName = u.Hostname()
		var peer []*x509.Certificate // the server's chain, once verified
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { peer = cs.PeerCertificates; return nil }
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: cfg}
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := d.DialContext(hctx, "tcp", u.Host)
		if err == nil {
			// The server checks the client's certificate after the
			// client's side of the handshake: its verdict comes with the
			// first read.
			_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				err = nil
			}
		}
		cancel()
		if err != nil && isTLSRefusal(err) {
			return fmt.Errorf("TLS with %s refused: %s: %v; is %s the fleet's CA, and %s signed by it?", u.Host, whichCAs(f, err, peer), err, f.CA, f.Cert)
		}
	}
	return nil
}

// isTLSRefusal: a handshake failed on a certificate, not a connection
// that could not be made.
func isTLSRefusal(err error) bool {
	var ve *tls.CertificateVerificationError
	var ae tls.AlertError
	return errors.As(err, &ve) || errors.As(err, &ae) || strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:")
}

// whichCAs names the two CAs of a refused handshake: the one the server's
// certificate names as its issuer, and this host's (ca-file), each by its
// name and key id, so that two fleets' CAs are told apart. With the
// server's certificate verified, it was the server that refused this
// host's certificate.
func whichCAs(f *pki.Files, err error, peer []*x509.Certificate) string {
	ours := "this host's CA " + f.CA
	if ca, rerr := pki.ReadCert(f.CA); rerr == nil {
		ours = fmt.Sprintf("this host's CA %s in %s", pki.DescribeCA(ca), f.CA)
	}
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		return fmt.Sprintf("its certificate is of the CA %s, not of %s", pki.DescribeIssuer(ve.UnverifiedCertificates[0]), ours)
	}
	if len(peer) > 0 {
		return fmt.Sprintf("it refused this host's certificate, of %s (its own is of the CA %s)", ours, pki.DescribeIssuer(peer[0]))
	}
	return "its certificate or ours is of another CA than " + ours
}
