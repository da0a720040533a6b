package acl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd's users of a beacon cluster. etcd itself requires the user "root"
// with the role "root" before it turns auth on; membership changes
// (MemberAdd, MemberPromote, MemberRemove) and snapshots need it. Every
// other etcd call of the agents runs as the agent user, whose role can
// read and write the namespace and nothing else.
const (
	EtcdRootUser  = "root"
	EtcdRootRole  = "root"
	EtcdAgentUser = "beacon-agent"
	EtcdAgentRole = "beacon-agent"
)

// EtcdCredentials are the passwords of the two users.
type EtcdCredentials struct {
	RootPassword  string `json:"root_password"`
	AgentUser     string `json:"agent_user"`
	AgentPassword string `json:"agent_password"`
}

// NewEtcdCredentials makes fresh random passwords (256 bits each).
func NewEtcdCredentials() EtcdCredentials {
	return EtcdCredentials{RootPassword: randomHex(32), AgentUser: EtcdAgentUser, AgentPassword: randomHex(32)}
}

// Agent sets the agent user's credentials on an etcd client config.
func (c EtcdCredentials) Agent(cfg *clientv3.Config) {
	cfg.Username, cfg.Password = c.AgentUser, c.AgentPassword
}

// Root sets the root user's credentials on an etcd client config (for
// membership changes and snapshots only).
func (c EtcdCredentials) Root(cfg *clientv3.Config) {
	cfg.Username, cfg.Password = EtcdRootUser, c.RootPassword
}

// EnableEtcdAuth turns on etcd's authentication for a beacon cluster,
// through cli (a client without credentials, before auth is on): the root
// user and role, the agent user with a role limited to namespace, then
// AuthEnable. From then on a client without credentials is refused, and
// one with the agent's can touch only the namespace. Each step converges
// (a user that exists gets the password given), so a bootstrap that
// failed half-way can be run again; with auth already on it does nothing
// and answers nil.
func EnableEtcdAuth(ctx context.Context, cli *clientv3.Client, namespace string, creds EtcdCredentials) error {
	if namespace == "" || namespace == "/" {
		return rpcerr.Wrapf(ErrInvalidArgument, "etcd auth: namespace %q would give the agent user every key", namespace)
	}
	if creds.RootPassword == "" || creds.AgentPassword == "" || creds.AgentUser == "" || creds.AgentUser == EtcdRootUser {
		return rpcerr.Wrapf(ErrInvalidArgument, "etcd auth: the root password, the agent user (not root) and its password are all needed")
	}
	if st, err := cli.AuthStatus(ctx); err == nil && st.Enabled {
		return nil
	} else if err != nil && !errors.Is(err, rpctypes.ErrUserEmpty) {
		return fmt.Errorf("etcd auth status: %w", err)
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"add role root", func() error {
			_, err := cli.RoleAdd(ctx, EtcdRootRole)
			return ignore(err, rpctypes.ErrRoleAlreadyExist)
		}},
		{"add user root", func() error { return putUser(ctx, cli, EtcdRootUser, creds.RootPassword) }},
		{"grant root the role root", func() error { _, err := cli.UserGrantRole(ctx, EtcdRootUser, EtcdRootRole); return err }},
		{"add role " + EtcdAgentRole, func() error {
			_, err := cli.RoleAdd(ctx, EtcdAgentRole)
			return ignore(err, rpctypes.ErrRoleAlreadyExist)
		}},
		{"grant " + EtcdAgentRole + " readwrite on " + namespace, func() error {
			_, err := cli.RoleGrantPermission(ctx, EtcdAgentRole, namespace, clientv3.GetPrefixRangeEnd(namespace),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user " + creds.AgentUser, func() error { return putUser(ctx, cli, creds.AgentUser, creds.AgentPassword) }},
		{"grant " + creds.AgentUser + " the role " + EtcdAgentRole, func() error {
			_, err := cli.UserGrantRole(ctx, creds.AgentUser, EtcdAgentRole)
			return err
		}},
		{"enable auth", func() error { _, err := cli.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return fmt.Errorf("etcd auth: %s: %w", s.what, err)
		}
	}
	return nil
}

func putUser(ctx context.Context, cli *clientv3.Client, name, password string) error {
	_, err := cli.UserAdd(ctx, name, password)
	if errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		_, err = cli.UserChangePassword(ctx, name, password)
	}
	return err
}

func ignore(err, ok error) error {
	if errors.Is(err, ok) {
		return nil
	}
	return err
}

// SaveEtcdCredentials writes the credentials to path, readable by the
// agent's user only (like the TLS key files beside it).
func SaveEtcdCredentials(path string, c EtcdCredentials) error {
	b, _ := json.MarshalIndent(c, "", "  ")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("etcd credentials: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("etcd credentials %s: %w", path, err)
	}
	return f.Close()
}

// LoadEtcdCredentials reads a file written by SaveEtcdCredentials. A file
// others may read is refused: it holds etcd's root password.
func LoadEtcdCredentials(path string) (EtcdCredentials, error) {
	var c EtcdCredentials
	st, err := os.Stat(path)
	if err != nil {
		return c, fmt.Errorf("etcd credentials: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return c, fmt.Errorf("etcd credentials %s: mode %v lets others read etcd's root password; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("etcd credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("etcd credentials %s: %v", path, err)
	}
	if c.RootPassword == "" || c.AgentUser == "" || c.AgentPassword == "" {
		return c, fmt.Errorf("etcd credentials %s: root_password, agent_user and agent_password are all needed", path)
	}
	return c, nil
}
