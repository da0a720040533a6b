package agent

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/beaconhq/beacon/pki"
)

// schemeOf is the scheme every URL takes: https with the TLS files,
// http without.
func schemeOf(f *pki.Files) string {
	if f != nil {
		return "https"
	}
	return "http"
}

// urlDefaults are the defaults of the URL keys, written with http; with
// TLS on they mean the same address with https.
var urlDefaults = map[string]string{
	"client-url": "http://127.0.0.1:2379",
	"peer-url":   "http://127.0.0.1:2380",
}

// schemeDefault turns a URL key left at its default into the scheme of
// the configuration, so that setting the TLS files alone gives https on
// the default addresses.
func schemeDefault(raw, key, scheme string) string {
	if d, ok := urlDefaults[key]; ok && raw == d {
		return scheme + strings.TrimPrefix(raw, "http")
	}
	return raw
}

// parseURL accepts scheme://host:port (host an IP or localhost) and
// returns it in canonical form. scheme is https when the TLS files are
// set, else http: a URL of the other scheme is refused rather than
// served or dialed otherwise than it says.
func parseURL(raw, scheme string) (string, error) { return parseURLHost(raw, scheme, false) }

// parseURLHost is parseURL that, with anyHost, also takes a host name: the
// URLs the agent only dials (join, endpoints) may name hosts.
func parseURLHost(raw, scheme string, anyHost bool) (string, error) {
	if raw == "" {
		return "", errors.New("must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not a URL of the form %s://host:port", raw, scheme)
	}
	switch {
	case u.Scheme == scheme:
	case u.Scheme == "https":
		return "", fmt.Errorf("%q: https needs ca-file, cert-file and key-file (make them with beacon tls init and beacon tls cert)", raw)
	case u.Scheme == "http" && scheme == "https":
		return "", fmt.Errorf("%q: with ca-file, cert-file and key-file set, every URL is https", raw)
	default:
		return "", fmt.Errorf("%q: scheme must be %s", raw, scheme)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q must be only %s://host:port, without path, query or user", raw, scheme)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("%q has no port", raw)
	}
	if anyHost {
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return "", fmt.Errorf("%q: port must be a number from 1 to 65535", raw)
		}
	} else if err := validHostPort(u.Host); err != nil {
		return "", err
	}
	return scheme + "://" + u.Host, nil
}

// parseURLList parses a comma-separated list; a bare host:port takes the
// configuration's scheme.
func parseURLList(raw, scheme string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "://") {
			part = scheme + "://" + part
		}
		u, err := parseURLHost(part, scheme, true)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// validInitialCluster checks name=peerURL pairs, and that this node is among
// them with its own peer URL, which etcd requires of a bootstrapping member.
func validInitialCluster(raw, name, peerURL, scheme string) error {
	seen := map[string]bool{}
	var mine string
	for _, pair := range strings.Split(raw, ",") {
		n, u, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || n == "" {
			return fmt.Errorf("%q is not name=%s://host:port", pair, scheme)
		}
		pu, err := parseURL(u, scheme)
		if err != nil {
			return fmt.Errorf("member %s: %v", n, err)
		}
		if seen[n] {
			return fmt.Errorf("member %s is listed twice", n)
		}
		seen[n] = true
		if n == name {
			mine = pu
		}
	}
	if mine == "" {
		return fmt.Errorf("this node's name %q is missing from it; add %s=%s or start with the right --name", name, name, peerURL)
	}
	if peerURL != "" && !sameHostPort(mine, peerURL) {
		return fmt.Errorf("gives %s for %s, but peer-url is %s; they must match", mine, name, peerURL)
	}
	return nil
}

func sameHostPort(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	ha, pa, _ := net.SplitHostPort(ua.Host)
	hb, pb, _ := net.SplitHostPort(ub.Host)
	if pa != pb {
		return false
	}
	if ha == hb || (ha == "localhost" && hb == "127.0.0.1") || (hb == "localhost" && ha == "127.0.0.1") {
		return true
	}
	return false
}
