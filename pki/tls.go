package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files are one host's TLS files (DESIGN.md, Security: one set per host):
// the fleet's CA, and the host's certificate and key, which serve both
// ways (an agent serves its URLs and dials its peers with the same pair).
type Files struct {
	CA   string // ca-file: the CA every peer and client must be signed by
	Cert string // cert-file
	Key  string // key-file
}

// ErrPartial: some of the three files are given, not all.
var ErrPartial = errors.New("give ca-file, cert-file and key-file together")

// FilesOf returns the files, nil when none is given (TLS off), or
// ErrPartial naming what is missing.
func FilesOf(ca, cert, key string) (*Files, error) {
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"ca-file", ca}, {"cert-file", cert}, {"key-file", key}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w (missing: %v)", ErrPartial, missing)
	}
	return &Files{CA: ca, Cert: cert, Key: key}, nil
}

// Check is Check on the files.
func (f *Files) Check(use Use, hosts ...string) error {
	return Check(f.CA, f.Cert, f.Key, use, hosts...)
}

func (f *Files) load() (tls.Certificate, *x509.CertPool, error) {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%w: %s, %s: %v", ErrCert, f.Cert, f.Key, err)
	}
	b, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("%w: %v", ErrCert, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return tls.Certificate{}, nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrCert, f.CA)
	}
	return pair, pool, nil
}

// ServerConfig serves with the host's certificate and admits only
// clients that present a certificate signed by the CA (mutual TLS).
// nextProtos are the ALPN protocols served ("h2" for gRPC).
func (f *Files) ServerConfig(nextProtos ...string) (*tls.Config, error) {
	pair, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   nextProtos,
	}, nil
}

// ClientConfig trusts only the CA and presents the host's certificate.
// The server's name is checked against the host a connection dials.
func (f *Files) ClientConfig() (*tls.Config, error) {
	pair, pool, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
	}, nil
}
