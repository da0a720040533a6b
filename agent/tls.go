package agent

import (
	"crypto/tls"
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"net"
	"net/url"

	"github.com/beaconhq/beacon/pki"
)

// TLS on every hop, switched on by ca-file, cert-file and key-file
// (DESIGN.md, Security). With them:
//
//   - peer traffic between members is mutual TLS (embedded: PeerTLSInfo);
//   - the members' client URLs, and a proxy's etcd-compatible endpoint,
//     serve mutual TLS, and every etcd client of the agent dials with the
//     CA and the host's certificate;
//   - the gRPC API's TCP listener is mutual TLS (the unix socket, owner
//     only, stays plain: it stands for the host's own operator);
//   - HTTP (/health, /ready, /metrics, /version) is mutual TLS.
//
// One certificate per host serves and dials, so it needs both key usages
// and every address others reach the host at in its SANs. checkTLS tells
// at start, before anything is created, what is wrong with it.

// tlsTarget is one address this host serves TLS at, with the key that
// sets it, for the message that names both.
type tlsTarget struct {
	key  string
	addr string // as configured: a URL or host:port
	host string
}

// tlsTargets are the addresses the host's certificate must cover.
func (c *Config) tlsTargets() []tlsTarget {
	var out []tlsTarget
	add := func(key, addr string) {
		host := addr
		if u, err := url.Parse(addr); err == nil && u.Host != "" {
			host = u.Hostname()
		} else if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		}
		// A wildcard listen address is reached at the host's addresses,
		// which the configuration does not name: nothing to check here.
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			return
		}
		out = append(out, tlsTarget{key: key, addr: addr, host: host})
	}
	if c.Role != cluster.RoleExternal {
		add("client-url", c.ClientURL)
	}
	if c.Role == cluster.RoleMember || c.Role == cluster.RoleAuto {
		add("peer-url", c.PeerURL)
	}
	add("api-addr", c.APIAddr)
	add("http-addr", c.HTTPAddr)
	return out
}

// checkTLS stops the agent before it creates anything when its
// certificate cannot serve: the key not the certificate's, another CA's
// signature, the expiry passed, a key usage missing, an address others
// reach this host at missing from its SANs. The line names the file, the
// cause and, for a SAN, the key whose address it lacks.
func checkTLS(c *Config) error {
	if c.TLS == nil {
		return nil
	}
	// As a client: the agent dials its peers, the members and its join
	// URLs with the same certificate.
	if err := c.TLS.Check(pki.Client); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	for _, t := range c.tlsTargets() {
		if err := c.TLS.Check(pki.Server, t.host); err != nil {
			return fmt.Errorf("tls: %s %s: %w", t.key, t.addr, err)
		}
	}
	return nil
}

// apiClientAuth is what the API's TCP listener asks of a client: a
// certificate signed by the CA. With ACLs on, a token authenticates a
// call instead, so a certificate is verified if given (another CA's is
// still refused in the handshake) but not required: the ACL gate refuses
// a call that brings no token.
func apiClientAuth(aclOn bool) tls.ClientAuthType {
	if aclOn {
		return tls.VerifyClientCertIfGiven
	}
	return tls.RequireAndVerifyClientCert
}

// apiTLS is the API listener's TLS: mutual, gRPC's HTTP/2 by ALPN.
func (c *Config) apiTLS() (*tls.Config, error) {
	tc, err := c.TLS.ServerConfig("h2")
	if err != nil {
		return nil, err
	}
	tc.ClientAuth = apiClientAuth(c.ACL)
	return tc, nil
}

// httpTLS is the HTTP listener's TLS: mutual, as /metrics tells about
// the cluster and pprof (with enable-debug) about the process.
func (c *Config) httpTLS() (*tls.Config, error) {
	return c.TLS.ServerConfig("http/1.1")
}
