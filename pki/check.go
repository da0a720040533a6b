package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// ErrCert: a certificate cannot serve; the message names the file and the
// cause.
var ErrCert = errors.New("certificate")

// Use is what a certificate is checked for.
type Use int

const (
	// Server: it serves TLS (the agent's API, HTTP, etcd client and peer
	// URLs).
	Server Use = iota
	// Client: it authenticates a client (the CLI, a peer dialing out, an
	// agent reaching etcd).
	Client
)

func (u Use) String() string {
	if u == Server {
		return "server"
	}
	return "client"
}

func (u Use) ext() x509.ExtKeyUsage {
	if u == Server {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// Check tells whether the certificate and key files can serve for use
// under the CA of caFile, now, at each of hosts (IPs or names others reach
// it at; none for a client). The first failure is one line naming the
// file and the cause: the key that is not the certificate's, the CA that
// did not sign it, the expiry passed, the key usage missing, the host
// missing from its SANs.
func Check(caFile, certFile, keyFile string, use Use, hosts ...string) error {
	ca, err := ReadCert(caFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCert, err)
	}
	cert, err := ReadCert(certFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCert, err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("%w: %s is not the key of %s: %v", ErrCert, keyFile, certFile, err)
	}
	now := time.Now()
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("%w: %s expired on %s; issue a new one with beacon tls cert", ErrCert, certFile, cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("%w: %s is not valid before %s (is this host's clock right?)", ErrCert, certFile, cert.NotBefore.UTC().Format(time.RFC3339))
	case now.After(ca.NotAfter):
		return fmt.Errorf("%w: the CA %s expired on %s", ErrCert, caFile, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("%w: %s was not signed by the CA in %s (its issuer is %s, the CA is %s)", ErrCert, certFile, caFile,
			DescribeIssuer(cert), DescribeCA(ca))
	}
	if len(cert.ExtKeyUsage) > 0 && !slices.Contains(cert.ExtKeyUsage, use.ext()) && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return fmt.Errorf("%w: %s is not for %s use (its key usages: %s); issue it without --client", ErrCert, certFile, use, usageNames(cert.ExtKeyUsage))
	}
	for _, h := range hosts {
		if err := cert.VerifyHostname(h); err != nil {
			return fmt.Errorf("%w: %s does not cover %s (its SANs: %s); issue it with --%s %s", ErrCert, certFile, h, sans(cert), hostFlag(h), h)
		}
	}
	return nil
}

func hostFlag(h string) string {
	if net.ParseIP(h) != nil {
		return "ip"
	}
	return "dns"
}

func sans(c *x509.Certificate) string {
	var s []string
	for _, ip := range c.IPAddresses {
		s = append(s, ip.String())
	}
	s = append(s, c.DNSNames...)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func usageNames(us []x509.ExtKeyUsage) string {
	var s []string
	for _, u := range us {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			s = append(s, "server")
		case x509.ExtKeyUsageClientAuth:
			s = append(s, "client")
		default:
			s = append(s, fmt.Sprintf("other(%d)", u))
		}
	}
	return strings.Join(s, ", ")
}
