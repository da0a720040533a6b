package acl

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/beaconhq/beacon/internal/peercred"

	"google.golang.org/grpc/credentials"
)

// ConnCredentials are server credentials for an API whose listeners do
// their own TLS (tls.NewListener, as the agent's TCP listener does) beside
// a plain unix socket: they leave each connection as it is and only let a
// call see its connection's TLS state, so that the gate can tell a client
// certificate the listener verified (ACL.Bootstrap with the operator's
// certificate). Without them, gRPC sees every connection as plain.
func ConnCredentials() credentials.TransportCredentials { return connCredentials{} }

type connCredentials struct{}

// ConnAuthInfo is a connection's AuthInfo under ConnCredentials. The TLS
// state is read when asked: a TLS listener's handshake runs on the
// connection's first read, after gRPC's server handshake.
type ConnAuthInfo struct {
	credentials.CommonAuthInfo
	conn net.Conn
	// The unix socket's peer (SO_PEERCRED), read at accept: the
	// session service checks the process a session names against it.
	cred   peercred.Cred
	isUnix bool
}

// PeerCred is the unix socket peer's credentials; ok is false over TCP.
func (a ConnAuthInfo) PeerCred() (peercred.Cred, bool) { return a.cred, a.isUnix }

// AuthType implements credentials.AuthInfo.
func (ConnAuthInfo) AuthType() string { return "beacon-conn" }

// TLS is the connection's TLS state; ok is false for a plain connection.
func (a ConnAuthInfo) TLS() (tls.ConnectionState, bool) {
	if c, ok := a.conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return c.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

func (connCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	level := credentials.NoSecurity
	if _, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		level = credentials.PrivacyAndIntegrity
	}
	info := ConnAuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: level}, conn: c}
	info.cred, info.isUnix = peercred.Of(c)
	return c, info, nil
}

func (connCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("acl.ConnCredentials are for a server")
}

func (connCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "beacon-conn"}
}

func (c connCredentials) Clone() credentials.TransportCredentials { return c }

func (connCredentials) OverrideServerName(string) error { return nil }
