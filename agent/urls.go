package agent

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// parseURL accepts http://host:port (host an IP or localhost) and returns it
// in canonical form. TLS is not offered yet, so https is refused rather than
// silently served in clear.
func parseURL(raw string) (string, error) { return parseURLHost(raw, false) }

// parseURLHost is parseURL that, with anyHost, also takes a host name: the
// URLs the agent only dials (join, endpoints) may name hosts.
func parseURLHost(raw string, anyHost bool) (string, error) {
	if raw == "" {
		return "", errors.New("must not be empty")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not a URL of the form http://host:port", raw)
	}
	if u.Scheme == "https" {
		return "", fmt.Errorf("%q: https is not supported yet; use http on a private network", raw)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("%q: scheme must be http", raw)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q must be only http://host:port, without path, query or user", raw)
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
	return "http://" + u.Host, nil
}

// parseURLList parses a comma-separated list; a bare host:port means http.
func parseURLList(raw string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "://") {
			part = "http://" + part
		}
		u, err := parseURLHost(part, true)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// validInitialCluster checks name=peerURL pairs, and that this node is among
// them with its own peer URL, which etcd requires of a bootstrapping member.
func validInitialCluster(raw, name, peerURL string) error {
	seen := map[string]bool{}
	var mine string
	for _, pair := range strings.Split(raw, ",") {
		n, u, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || n == "" {
			return fmt.Errorf("%q is not name=http://host:port", pair)
		}
		pu, err := parseURL(u)
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
