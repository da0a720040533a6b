package session

import (
	"errors"
	"fmt"
	"io"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/apiduration"
	"github.com/beaconhq/beacon/internal/procid"
	"github.com/beaconhq/beacon/internal/rpcerr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Service implements the Session gRPC service.
type Service struct {
	beaconpb.UnimplementedSessionServer
	m      *Manager
	bootID string // this host's, to tell a local client's death
}

// NewService serves sessions from m.
func NewService(m *Manager) *Service { return &Service{m: m, bootID: procid.BootID()} }

// ttlField is OpenSession's ttl: absent is the default; zero is refused
// (a lease needs a TTL), as is anything under a second.
var ttlField = apiduration.Field{Name: "ttl", Default: DefaultTTL, Min: time.Second, Max: MaxTTL}

// Open runs one session for the life of the stream.
func (s *Service) Open(stream beaconpb.Session_OpenServer) error {
	// A client that never says open must not hold a handler forever.
	type recv struct {
		msg *beaconpb.SessionRequest
		err error
	}
	got := make(chan recv, 1)
	go func() {
		m, err := stream.Recv()
		got <- recv{m, err}
	}()
	var first *beaconpb.SessionRequest
	select {
	case r := <-got:
		if r.err != nil {
			return r.err
		}
		first = r.msg
	case <-time.After(firstMessageTimeout):
		return status.Error(codes.DeadlineExceeded, "no open message within 10s")
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.InvalidArgument, "the first message must be open")
	}
	ttl, err := ttlField.Read(open.Ttl)
	if err != nil {
		return rpcerr.From(err)
	}
	if err := checkName(open.Name); err != nil {
		return err
	}
	// The process a session names: kept, dropped or refused (claim.go).
	proc, err := s.claim(stream.Context(), open.Process)
	if err != nil {
		return rpcerr.From(err)
	}
	open.Process = proc
	sess, err := s.m.Open(stream.Context(), open.Name, ttl)
	if errors.Is(err, ErrStopping) {
		return status.Error(codes.Unavailable, err.Error())
	}
	if err != nil {
		return rpcerr.From(err)
	}
	// Whatever ends this call, the lease goes with it: revoked, unless the
	// agent is stopping under a holder that did not close (see end).
	// How the stream ended decides whether the lease is revoked (see end).
	var how streamEnd
	defer func() { s.end(sess, how, open.Process) }()

	events := make(chan *beaconpb.SessionEvent, 16)
	sess.OnLeaseChange(func(old, new clientv3.LeaseID) {
		ev := &beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_LeaseLost{LeaseLost: &beaconpb.LeaseLost{
			SessionId: sess.ID, OldLeaseId: fmt.Sprintf("%x", old), NewLeaseId: fmt.Sprintf("%x", new)}}}
		select {
		case events <- ev:
		default: // the client is not reading; it learns from its calls failing
		}
	})
	if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Opened{Opened: &beaconpb.SessionOpened{
		SessionId: sess.ID, Ttl: durationpb.New(sess.TTL), LeaseId: fmt.Sprintf("%x", sess.Lease())}}}); err != nil {
		return err
	}

	c := newConfirmer(sess)
	defer c.stop()
	recvDone := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			switch {
			case msg.GetClose() != nil:
				recvDone <- nil
				return
			case msg.GetConfirm() != nil:
				c.ask(msg.GetConfirm().Seq)
			}
		}
	}()
	stopping := s.m.Stopping()
	for {
		select {
		case err := <-recvDone:
			if err == nil || errors.Is(err, io.EOF) {
				how = closedByClient
				return nil
			}
			how = brokenFromClient
			// The client went away (exited, was killed): the normal end of
			// a session, not a server error.
			return status.Error(codes.Canceled, "the client ended the session: "+status.Convert(err).Message())
		case ev := <-events:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-c.wake:
			c.poke()
		case <-c.gap:
			c.gapPassed()
		case r := <-c.results:
			if conf := c.finish(r); conf != nil {
				if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Confirmed{Confirmed: conf}}); err != nil {
					return err
				}
			}
			c.poke() // the requests that came while it was in flight
		case <-stopping:
			stopping = nil
			if err := stream.Send(&beaconpb.SessionEvent{Kind: &beaconpb.SessionEvent_Stopping{Stopping: &beaconpb.AgentStopping{
				Wait: durationpb.New(s.m.stopWait)}}}); err != nil {
				return err
			}
		case <-sess.Done():
			return status.Error(codes.Unavailable, "the session ended: the agent is stopping")
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

// streamEnd is how a session's stream ended.
type streamEnd int

const (
	endedByServer    streamEnd = iota // the agent stopping, the server's context
	closedByClient                    // a close message, or the client's half-close
	brokenFromClient                  // the connection broke: a crash, or a reset
)

// clientGoneWait bounds how long the agent waits for a client whose
// connection broke to be gone: its connection closes as it exits, a
// moment before the process is reaped.
const clientGoneWait = time.Second

// end ends the session with its stream. A client that closed is done with
// what it held: revoke. A session that holds nothing is revoked too. For a
// holder whose stream broke, the lease is revoked at once only if its
// process is known to be gone from this host (a crash: the rest of the
// fleet gets what it held in milliseconds); if it lives (the connection
// was reset), or cannot be checked (another host), the lease is left to
// expire after its TTL, since the holder may still be acting until its own
// deadline. A client that names no process is revoked, as before holders
// had deadlines. While the agent stops, a holder is left to CloseAll,
// which abandons it.
func (s *Service) end(sess *Session, how streamEnd, proc *beaconpb.ClientProcess) {
	if how == closedByClient || !sess.Holding() {
		sess.Close()
		return
	}
	select {
	case <-s.m.Stopping():
		sess.Abandon()
		return
	default:
	}
	if proc == nil || procid.WaitGone(proc, s.bootID, clientGoneWait) {
		sess.Close()
		return
	}
	s.m.lg.Warn("a holder's connection broke while its process lives on (or is on another host); its lease is left to expire after its TTL",
		zap.String("lease", fmt.Sprintf("%x", sess.Lease())), zap.String("name", sess.Name), zap.Int64("pid", proc.Pid), zap.Duration("ttl", sess.TTL))
	sess.Abandon()
}

const firstMessageTimeout = 10 * time.Second

// MaxNameBytes bounds a session's name: it is shown to other clients (a
// lock's holders, an election's leader) and written into etcd values. The
// CLI names its sessions after the lock, election or queue (an election's
// name may have 256 bytes).
const MaxNameBytes = 512

// checkName refuses a name that is too long or holds control characters
// (which would reach other clients' terminals in their answers).
func checkName(name string) error {
	if len(name) > MaxNameBytes {
		return status.Errorf(codes.InvalidArgument, "name: %d bytes, at most %d", len(name), MaxNameBytes)
	}
	if !utf8.ValidString(name) {
		return status.Error(codes.InvalidArgument, "name: not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return status.Errorf(codes.InvalidArgument, "name: control character %U", r)
		}
	}
	return nil
}
