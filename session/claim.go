package session

import (
	"context"
	"fmt"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/peercred"
	"github.com/beaconhq/beacon/internal/procid"
	"github.com/beaconhq/beacon/internal/rpcerr"
)

// claim judges the process a session names, which decides, when its
// stream breaks, between revoking at once (the process is gone) and
// leaving the lease to its TTL (it may still act). It answers the claim
// to keep, nil to drop it (the session is then revoked at once when its
// stream breaks, as an unnamed one), or a refusal.
//
//   - Only a process that runs on this host now can be judged later; any
//     other claim (another boot id, a pid that does not run) is dropped,
//     so a client cannot keep its holdings alive for a whole TTL after it
//     is gone by naming a process that is not there.
//   - Over the unix socket the kernel says which process connected
//     (SO_PEERCRED): the claim must be that process or one of its
//     descendants (a holder may hand its work to a child it runs), else
//     the session is refused. Naming another live process of the host (a
//     daemon that runs for months) would keep the leases for their TTL
//     after the client is gone. When the peer's process cannot be seen
//     (another pid namespace: the kernel answers pid 0), its claim, in
//     pids of its own namespace, cannot be judged either: dropped.
//   - Over TCP nothing tells the agent who is calling: a claim of a local
//     process that runs is taken on trust (docs/security.md, Owners).
func (s *Service) claim(ctx context.Context, p *beaconpb.ClientProcess) (*beaconpb.ClientProcess, error) {
	if p == nil || !procid.Runs(p, s.bootID) {
		return nil, nil
	}
	if !peercred.OverUnixSocket(ctx) {
		return p, nil
	}
	cred, ok := peercred.FromContext(ctx)
	if !ok || cred.PID <= 0 {
		return nil, nil
	}
	if !procid.IsOrDescends(int(p.Pid), int(cred.PID)) {
		return nil, rpcerr.Wrap(ErrNotPeersProcess, fmt.Sprintf(
			"process: pid %d is neither the process that connected (pid %d) nor one of its descendants; "+
				"over the agent's unix socket a session may name only its own process (as the SDK does) or none",
			p.Pid, cred.PID))
	}
	return p, nil
}
