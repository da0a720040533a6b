package bench

import (
	"context"
	"fmt"
	"io"
)

// lockTLS is `beacon bench --tls lock`: the same workload against an agent
// with TLS on every hop and one without, started side by side, in turns
// (off, on, then on, off) so that what else the machine does falls on
// both alike; it prints the mean of each and the ratio.
func lockTLS(ctx context.Context, w io.Writer, o LockOptions) error {
	return lockCompare(ctx, w, o, lockComparison{
		flag:   "--tls",
		names:  [2]string{tlsName(false), tlsName(true)},
		agents: "one with TLS on every hop (API, etcd client and peer)",
		start: func(on bool) (*agentProc, func(), error) {
			return ownAgentTLS(ctx, fmt.Sprintf("bench-lock-%d", btoi(on)), on)
		},
		notes: []string{
			"beacon: Lock.Acquire/Release over gRPC through the agent (TLS: client to API, agent to etcd in-process).",
			"Mutex: etcd's concurrency.Mutex straight to the member's client URL (TLS: client to etcd).",
		},
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
