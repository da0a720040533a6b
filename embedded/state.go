package embedded

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/beaconhq/beacon/cluster"
	"os"
	"path/filepath"
)

// stateFile is what the agent remembers about its place in the cluster
// between runs, beside etcd's own data. It lets a restart tell "this data
// dir belongs to another cluster" or "this member was removed" apart from an
// ordinary restart, which etcd alone reports only as endless peer errors.
type stateFile struct {
	Name      string       `json:"name"`
	Role      cluster.Role `json:"role"`
	ClusterID string       `json:"cluster_id,omitempty"`
	MemberID  string       `json:"member_id,omitempty"`
	PeerURL   string       `json:"peer_url,omitempty"`
	ClientURL string       `json:"client_url,omitempty"`
	Endpoints []string     `json:"endpoints,omitempty"` // client URLs of the cluster, last seen
	Left      bool         `json:"left,omitempty"`      // this member left with `beacon leave`
}

const stateName = "beacon-state.json"

// etcdDir is where the embedded member keeps its raft log and database.
func etcdDir(dataDir string) string { return filepath.Join(dataDir, "etcd") }

func hasMemberData(dataDir string) bool {
	_, err := os.Stat(filepath.Join(etcdDir(dataDir), "member", "wal"))
	return err == nil
}

func readState(dataDir string) (*stateFile, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, stateName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s stateFile
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); move it aside to start afresh", filepath.Join(dataDir, stateName), err)
	}
	return &s, nil
}

// writeState replaces the state file atomically, so a crash mid-write
// leaves the old one.
func writeState(dataDir string, s *stateFile) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dataDir, stateName+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dataDir, stateName))
}
