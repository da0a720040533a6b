package agent

import (
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir creates the data dir and takes an exclusive lock on it, so a
// second agent on the same dir stops at once instead of corrupting it.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &ConfigError{Key: "data-dir", Err: err}
	}
	path := filepath.Join(dir, "agent.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, &ConfigError{Key: "data-dir", Err: err}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, &ConfigError{Key: "data-dir", Err: fmt.Errorf("%s is in use by another beacon agent (pid %s); stop it or choose another data-dir", dir, strings.TrimSpace(string(b)))}
	}
	_ = f.Truncate(0)
	_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return f, nil
}

// checkFree fails with the key's name when addr cannot be bound, before
// etcd starts and logs its own version of the problem.
func checkFree(key, addr string) error {
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return &ConfigError{Key: key, Err: err}
		}
		addr = u.Host
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return portError(key, addr, err)
	}
	return l.Close()
}

// checkPorts checks every address the agent will bind can be bound now,
// naming the key of the first that cannot.
func checkPorts(cfg Config) error {
	for _, c := range [][2]string{{"api-addr", cfg.APIAddr}, {"http-addr", cfg.HTTPAddr}, {"dns-addr", cfg.DNSAddr}} {
		if c[1] == "" {
			continue
		}
		if err := checkFree(c[0], c[1]); err != nil {
			return err
		}
	}
	if cfg.DNSAddr != "" {
		pc, err := net.ListenPacket("udp", cfg.DNSAddr)
		if err != nil {
			return portError("dns-addr", cfg.DNSAddr, err)
		}
		pc.Close()
	}
	return checkEtcdPorts(cfg)
}

// checkEtcdPorts checks the ports etcd will bind for the agent's role:
// the client URL (members and proxies) and the peer URL (members).
func checkEtcdPorts(cfg Config) error {
	if cfg.Role == cluster.RoleExternal {
		return nil
	}
	if err := checkFree("client-url", cfg.ClientURL); err != nil {
		return err
	}
	if cfg.Role == cluster.RoleProxy {
		return nil
	}
	return checkFree("peer-url", cfg.PeerURL)
}

func portError(key, addr string, err error) error {
	if strings.Contains(err.Error(), "address already in use") {
		return &ConfigError{Key: key, Err: fmt.Errorf("%s is already in use by another process (another agent or etcd?); choose another %s", addr, key)}
	}
	return &ConfigError{Key: key, Err: fmt.Errorf("cannot listen on %s: %v", addr, err)}
}
