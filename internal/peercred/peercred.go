// Package peercred reads who is at the other end of a unix socket
// connection (SO_PEERCRED): the process that connected, its user and
// group, as the kernel recorded them at connect time. Over TCP there is
// no such thing.
package peercred

import (
	"context"
	"net"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/peer"
)

// Cred is a unix connection's peer. PID is 0 when the peer's process is
// in a pid namespace this process cannot see.
type Cred struct {
	PID int32
	UID uint32
	GID uint32
}

// Of reads the credentials of c's peer; ok is false when c is not a
// unix connection (looking through wrappers that say what they wrap,
// NetConn, like tls.Conn) or the kernel did not answer.
func Of(c net.Conn) (cred Cred, ok bool) {
	for {
		if u, isUnix := c.(*net.UnixConn); isUnix {
			return ofUnix(u)
		}
		w, wraps := c.(interface{ NetConn() net.Conn })
		if !wraps {
			return Cred{}, false
		}
		c = w.NetConn()
	}
}

func ofUnix(c *net.UnixConn) (Cred, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, false
	}
	var (
		uc   *unix.Ucred
		uerr error
	)
	if err := raw.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || uerr != nil {
		return Cred{}, false
	}
	return Cred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, true
}

// Source is a connection's gRPC AuthInfo that recorded its peer's
// credentials (acl.ConnAuthInfo does).
type Source interface {
	PeerCred() (Cred, bool)
}

// FromContext is the credentials of a gRPC call's unix peer, as its
// connection's AuthInfo recorded them; ok is false over TCP, or when the
// server's credentials record none.
func FromContext(ctx context.Context) (Cred, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Cred{}, false
	}
	src, ok := p.AuthInfo.(Source)
	if !ok {
		return Cred{}, false
	}
	return src.PeerCred()
}

// OverUnixSocket reports whether a gRPC call came over a unix socket.
func OverUnixSocket(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	return ok && p.Addr != nil && p.Addr.Network() == "unix"
}
