package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Role is what an agent is in its cluster: it is started as a member, a
// proxy, auto (a member while voters are wanted, else a proxy) or in
// front of an external cluster (--role), and a member is listed as a
// voter or a learner. One type for all, so that a role is never a bare
// string compared by hand.
type Role string

const (
	RoleMember   Role = "member"
	RoleProxy    Role = "proxy"
	RoleAuto     Role = "auto"
	RoleExternal Role = "external"
	RoleVoter    Role = "voter"
	RoleLearner  Role = "learner"
)

// Members lists the etcd members and the proxy and external agents, each
// with what its agent announces about itself. The cluster id comes with it.
func Members(ctx context.Context, cli *clientv3.Client, namespace string) (string, []*beaconpb.Member, error) {
	// Serializable reads: a member without quorum still answers, so that
	// status can say the quorum is lost instead of timing out.
	ml, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return "", nil, err
	}
	nodes, err := listNodes(ctx, cli, namespace)
	if err != nil {
		return "", nil, err
	}
	byName := map[string]NodeInfo{}
	for _, n := range nodes {
		byName[n.Name] = n
	}

	var out []*beaconpb.Member
	for _, m := range ml.Members {
		role := RoleVoter
		if m.IsLearner {
			role = RoleLearner
		}
		pm := &beaconpb.Member{
			Id:         fmt.Sprintf("%x", m.ID),
			Name:       m.Name,
			Role:       string(role),
			PeerUrls:   m.PeerURLs,
			ClientUrls: m.ClientURLs,
		}
		if n, ok := byName[m.Name]; ok && n.Role == RoleMember {
			fillFromNode(pm, n)
			delete(byName, m.Name)
		}
		out = append(out, pm)
	}
	for _, n := range byName {
		if n.Role != RoleProxy && n.Role != RoleExternal {
			continue // a member's record whose member is gone: not a member
		}
		pm := &beaconpb.Member{Name: n.Name, Role: string(n.Role)}
		if n.ClientURL != "" {
			pm.ClientUrls = []string{n.ClientURL}
		}
		fillFromNode(pm, n)
		out = append(out, pm)
	}
	sort.Slice(out, func(i, j int) bool {
		if ri, rj := roleOrder(out[i].Role), roleOrder(out[j].Role); ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return fmt.Sprintf("%x", ml.Header.ClusterId), out, nil
}

func fillFromNode(pm *beaconpb.Member, n NodeInfo) {
	pm.ApiAddr = n.APIAddr
	pm.Version = n.Version
	pm.Started = n.Started
	pm.AgentAlive = true
}

func roleOrder(role string) int {
	return strings.Index("voter learner proxy external", role)
}

// statusTimeout bounds asking one member for its raft state, so that a dead
// member shows as unhealthy instead of stalling the whole report.
const statusTimeout = time.Second

// Status fills in each etcd member's raft state, asked of it directly, and
// sums up the cluster's health.
func Status(ctx context.Context, cli *clientv3.Client, namespace string) (*beaconpb.StatusResponse, error) {
	id, members, err := Members(ctx, cli, namespace)
	if err != nil {
		return nil, err
	}
	resp := &beaconpb.StatusResponse{ClusterId: id, Members: members}
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Id == "" || len(m.ClientUrls) == 0 {
			m.Healthy = m.AgentAlive
			continue
		}
		wg.Add(1)
		go func(m *beaconpb.Member) {
			defer wg.Done()
			fillStatus(ctx, cli, m)
		}(m)
	}
	wg.Wait()

	var leaderID string
	for _, m := range members {
		if Role(m.Role) == RoleVoter {
			resp.Voters++
			if m.Healthy {
				resp.HealthyVoters++
			}
		}
		if m.IsLeader {
			leaderID = m.Id
			resp.Leader = m.Name
		}
	}
	resp.HasQuorum = leaderID != "" && resp.HealthyVoters > resp.Voters/2
	return resp, nil
}

func fillStatus(ctx context.Context, cli *clientv3.Client, m *beaconpb.Member) {
	var lastErr error
	for _, ep := range m.ClientUrls {
		sctx, cancel := context.WithTimeout(ctx, statusTimeout)
		st, err := cli.Status(sctx, ep)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		m.Healthy = len(st.Errors) == 0
		m.IsLeader = st.Leader == st.Header.MemberId
		m.RaftTerm = st.RaftTerm
		m.RaftIndex = st.RaftIndex
		m.DbSize = st.DbSize
		m.EtcdVersion = st.Version
		if len(st.Errors) > 0 {
			m.Error = strings.Join(st.Errors, "; ")
		}
		return
	}
	if lastErr != nil {
		m.Error = "unreachable: " + lastErr.Error()
	}
}
