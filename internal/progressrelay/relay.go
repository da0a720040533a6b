// Package progressrelay carries progress reports from a queue worker's
// CMD (and its children) to the beacon process that holds the
// reservation: `beacon queue reserve QUEUE -- CMD` listens on a unix
// socket in a private directory (mode 0700) and names it in CMD's
// environment (Env); `beacon progress PERCENT [MESSAGE]` connects, sends
// one report and waits for the answer. The holder forwards the reports to
// the agent, at most one at a time and one per MinInterval: reports that
// come faster are coalesced, the latest wins, and every caller waiting is
// answered with the fate of the report that covered its own.
package progressrelay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Env names the relay's socket in CMD's environment.
const Env = "BEACON_PROGRESS"

// Bounds. MinInterval keeps a CMD reporting in a tight loop at 20 writes
// a second; maxConns bounds the reports waiting at once (one more is
// answered "busy" at once); maxLine bounds a request (a 1 KiB message,
// escaped as JSON); timeout bounds one report's whole exchange.
const (
	MinInterval = 50 * time.Millisecond
	maxConns    = 16
	maxLine     = 8 << 10
	timeout     = 15 * time.Second
)

// Send delivers one report to the agent.
type Send func(ctx context.Context, percent int, message string) error

// ErrClosed: the work the report was about has ended.
var ErrClosed = errors.New("the work has ended: the report was not sent")

// request is a report on the wire: one JSON line each way.
type request struct {
	Percent int    `json:"percent"`
	Message string `json:"message"`
}

type answer struct {
	Error string `json:"error,omitempty"`
}

// batch is the latest report not yet sent and everyone waiting on it.
type batch struct {
	req     request
	waiters []chan error
}

// Relay is the holder's end: a socket accepting reports for one
// reservation.
type Relay struct {
	dir    string
	ln     *net.UnixListener
	send   Send
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	wake   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending *batch
}

// Start listens on a new socket in a new private directory and forwards
// what comes in through send.
func Start(send Send) (*Relay, error) {
	sweep(os.TempDir())
	dir, err := os.MkdirTemp("", dirPattern()) // mode 0700: only this user connects
	if err != nil {
		return nil, fmt.Errorf("progress socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "sock"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("progress socket: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{dir: dir, ln: ln, send: send, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, maxConns), wake: make(chan struct{}, 1)}
	r.wg.Add(2)
	go r.accept()
	go r.forward()
	return r, nil
}

// Path is the socket's path, the value of Env.
func (r *Relay) Path() string { return r.ln.Addr().String() }

// Close stops taking reports, answers those waiting with ErrClosed and
// removes the socket and its directory.
func (r *Relay) Close() {
	r.cancel()
	r.ln.Close()
	r.wg.Wait()
	os.RemoveAll(r.dir)
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		conn, err := r.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		select {
		case r.slots <- struct{}{}:
		default:
			reply(conn, fmt.Errorf("busy: %d reports are waiting already", maxConns))
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() { <-r.slots }()
			r.handle(conn)
		}()
	}
}

// handle reads one report, hands it on, and answers with its fate.
func (r *Relay) handle(conn *net.UnixConn) {
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(io.LimitReader(conn, maxLine)).ReadBytes('\n')
	var req request
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	if err != nil {
		reply(conn, fmt.Errorf("not a progress report: %v", err))
		return
	}
	done := make(chan error, 1)
	r.submit(req, done)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err = <-done:
	case <-r.ctx.Done():
		err = ErrClosed
	case <-t.C:
		err = fmt.Errorf("the agent did not take the report within %s", timeout)
	}
	// The wait began after the read, so the connection's deadline may have
	// passed: give the answer its own, or the caller hears nothing.
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	reply(conn, err)
}

func reply(conn net.Conn, err error) {
	a := answer{}
	if err != nil {
		a.Error = err.Error()
	}
	b, _ := json.Marshal(a)
	_, _ = conn.Write(append(b, '\n'))
	conn.Close()
}

// submit makes req the next report to send: it replaces one not sent yet,
// whose callers wait on req's fate instead.
func (r *Relay) submit(req request, done chan error) {
	r.mu.Lock()
	if r.pending == nil {
		r.pending = &batch{}
	}
	r.pending.req = req
	r.pending.waiters = append(r.pending.waiters, done)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// forward sends the latest report, one at a time, MinInterval apart.
func (r *Relay) forward() {
	defer r.wg.Done()
	var last time.Time
	for {
		select {
		case <-r.wake:
		case <-r.ctx.Done():
			return
		}
		if wait := MinInterval - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.ctx.Done():
				return
			}
		}
		r.mu.Lock()
		b := r.pending
		r.pending = nil
		r.mu.Unlock()
		if b == nil {
			continue
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(r.ctx, timeout)
		err := r.send(ctx, b.req.Percent, b.req.Message)
		cancel()
		for _, w := range b.waiters {
			w <- err
		}
	}
}

// Report sends one report to the relay at path and returns once the
// agent has stored it (or a newer report that replaced it), or with why
// not.
func Report(ctx context.Context, path string, percent int, message string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("cannot reach the worker's beacon at %s (%s): %w", path, Env, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	b, _ := json.Marshal(request{Percent: percent, Message: message})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("sending the report to %s: %w", path, err)
	}
	line, err := bufio.NewReader(io.LimitReader(conn, maxLine)).ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("no answer from the worker's beacon at %s: %w", path, err)
	}
	var a answer
	if err := json.Unmarshal(line, &a); err != nil {
		return fmt.Errorf("a bad answer from the worker's beacon at %s: %w", path, err)
	}
	if a.Error != "" {
		return errors.New(a.Error)
	}
	return nil
}
