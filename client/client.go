// Package client is the Go SDK for talking to the beacon agent on this host.
// Applications and the beacon CLI use it alike.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/beaconhq/beacon/acl/bearer"
	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// DefaultAddr is the agent's API address when neither an option nor
// BEACON_AGENT says otherwise.
const DefaultAddr = "127.0.0.1:7600"

// Client is a connection to one agent.
type Client struct {
	conn *grpc.ClientConn
	// Cluster is the agent's Cluster service.
	Cluster beaconpb.ClusterClient
	// Registry is the agent's Registry service.
	Registry beaconpb.RegistryClient
	// Sessions is the agent's Session service; NewSession wraps it.
	Sessions beaconpb.SessionClient

	mu      sync.Mutex
	session *Session // the automatic session of Register
	// opening is the automatic session's opening in flight, at most one:
	// a session found broken by Register and by its keeper at once is
	// replaced once.
	opening *opening
	regs    map[string]*register // what Register registered, to replay on a new session
	closed  bool
}

type register struct {
	in    *beaconpb.Instance
	check *beaconpb.Check
}

type options struct {
	dialOpts []grpc.DialOption
	tls      *pki.Files
	tlsSet   bool // WithTLS was given: the environment is not read
	token    string
	tokenSet bool // WithToken was given: BEACON_TOKEN is not read
}

// Option configures New.
type Option func(*options)

// WithDialOptions adds grpc dial options.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// WithTLS dials the agent's TCP API with mutual TLS: files.CA is the only
// CA trusted for the agent's certificate, and files.Cert and files.Key
// are this client's certificate (a client usage, signed by the same CA).
// nil dials in plain. Without WithTLS, New reads BEACON_CA_FILE,
// BEACON_CERT_FILE and BEACON_KEY_FILE. A unix socket is always plain.
func WithTLS(files *pki.Files) Option {
	return func(o *options) { o.tls, o.tlsSet = files, true }
}

// WithToken sends an ACL token's secret with every call (an agent with
// ACLs on refuses a call without one; the unix socket needs none). ""
// sends none. Without WithToken, New reads BEACON_TOKEN.
func WithToken(secret string) Option {
	return func(o *options) { o.token, o.tokenSet = secret, true }
}

// TLSFromEnv is the TLS files BEACON_CA_FILE, BEACON_CERT_FILE and
// BEACON_KEY_FILE name: nil when none is set, an error when some are.
func TLSFromEnv() (*pki.Files, error) {
	return pki.FilesOf(os.Getenv("BEACON_CA_FILE"), os.Getenv("BEACON_CERT_FILE"), os.Getenv("BEACON_KEY_FILE"))
}

// transportCredentials are plain for a unix socket and without TLS
// files; otherwise mutual TLS, once the files check out as a client's.
func transportCredentials(o *options, target string) (credentials.TransportCredentials, error) {
	files := o.tls
	if !o.tlsSet {
		var err error
		if files, err = TLSFromEnv(); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
	}
	if files == nil || strings.HasPrefix(target, "unix:") {
		return insecure.NewCredentials(), nil
	}
	if err := files.Check(pki.Client); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc, err := files.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return credentials.NewTLS(tc), nil
}

// Addr resolves the agent address: addr if set, else BEACON_AGENT, else
// DefaultAddr.
func Addr(addr string) string {
	if addr != "" {
		return addr
	}
	if env := os.Getenv("BEACON_AGENT"); env != "" {
		return env
	}
	return DefaultAddr
}

// target turns host:port, unix:PATH, unix:///PATH or a bare socket path
// into a grpc target.
func target(addr string) string {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		return addr
	case strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "./"):
		return "unix:" + addr
	default:
		return "passthrough:///" + addr
	}
}

// New connects to the agent at addr (see Addr). The connection is made
// lazily: a dead agent shows up as Unavailable on the first call. A TCP
// address is dialed with mutual TLS under WithTLS, or else when
// BEACON_CA_FILE, BEACON_CERT_FILE and BEACON_KEY_FILE are set (a
// certificate that cannot serve as a client's is an error here, naming
// the file and the cause); a unix socket is always plain. Every call
// carries the token of WithToken, or else of BEACON_TOKEN.
func New(addr string, opts ...Option) (*Client, error) {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	tgt := target(Addr(addr))
	creds, err := transportCredentials(o, tgt)
	if err != nil {
		return nil, err
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A catalog of 100k instances lists as tens of MB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)),
		grpc.WithChainStreamInterceptor(refusalInRecv),
	}, o.dialOpts...)
	tok := o.token
	if !o.tokenSet {
		tok = os.Getenv(bearer.EnvToken)
	}
	dial = append(dial, bearer.Token(strings.TrimSpace(tok)).DialOptions()...)
	conn, err := grpc.NewClient(tgt, dial...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, Cluster: beaconpb.NewClusterClient(conn), Registry: beaconpb.NewRegistryClient(conn),
		Sessions: beaconpb.NewSessionClient(conn), regs: map[string]*register{}}, nil
}

// refusalInRecv leaves a stream's refusal to its Recv. An agent that
// refuses a stream at once (ACLs: no token) may end it before the
// client's first message is sent, and that Send then fails with a bare
// io.EOF ("beacon: EOF"), the status being only in Recv, as gRPC
// documents. Every caller receives after its first Send, so the first
// Send's io.EOF is dropped and the caller hears the agent's own error.
func refusalInRecv(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &firstSend{ClientStream: s}, nil
}

type firstSend struct {
	grpc.ClientStream
	sent atomic.Bool
}

func (s *firstSend) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if !s.sent.Swap(true) && errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// Conn is the underlying connection, for services without a typed helper.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close ends the automatic session (releasing what it holds at once) and
// closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	s := c.session
	c.session = nil
	c.closed = true
	c.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
	return c.conn.Close()
}
