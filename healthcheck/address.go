package healthcheck

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// The checks of what a Definition points at. They reject early what a
// probe would only fail on later, every interval, with a vaguer message.

const (
	maxURLBytes     = 2048
	maxHostBytes    = 253 // the longest DNS name
	maxServiceBytes = 256
)

// checkURL accepts absolute http and https URLs with a host.
func checkURL(s string) error {
	if len(s) > maxURLBytes {
		return fmt.Errorf("URL longer than %d bytes", maxURLBytes)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL; the user has it
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if err := checkPort(port); err != nil {
			return err
		}
	}
	return checkHost(u.Hostname())
}

// checkHostPort accepts host:port with a non-empty host (an IP literal or a
// DNS name) and a numeric port in 1..65535. An empty host would mean "this
// machine" to net.Dial, which is too easy to get by accident.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", s)
	}
	if err := checkPort(port); err != nil {
		return err
	}
	return checkHost(host)
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port must be a number from 1 to 65535, got %q", port)
	}
	return nil
}

func checkHost(host string) error {
	if host == "" {
		return errors.New("host is empty")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if len(host) > maxHostBytes {
		return fmt.Errorf("host longer than %d bytes", maxHostBytes)
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q is not an IP address or DNS name", host)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("host %q is not an IP address or DNS name", host)
			}
		}
	}
	return nil
}

// checkServiceName accepts what grpc.health.v1 can carry as a service name
// without surprises: non-empty, printable, no spaces or slashes.
func checkServiceName(s string) error {
	if s == "" {
		return errors.New("service name after / is empty (leave out the / to ask about the whole server)")
	}
	if len(s) > maxServiceBytes {
		return fmt.Errorf("service name longer than %d bytes", maxServiceBytes)
	}
	for _, c := range s {
		if c <= ' ' || c == '/' || c == 0x7f || c == 0xfffd {
			return fmt.Errorf("service name %q has a space, control character or slash", s)
		}
	}
	return nil
}
