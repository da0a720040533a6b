package dnsserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// trickler is a TCP connection from a chosen loopback address that sends
// one query every interval and reads its answer, until the server closes
// it or the test ends.
type trickler struct {
	conn     net.Conn
	answered atomic.Int64
	closed   chan struct{} // closed when the server has closed the connection
}

// dialFrom connects to addr from the loopback address from (all of
// 127.0.0.0/8 is this host's).
func dialFrom(from, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

func startTrickler(t testing.TB, from, addr string, every time.Duration, stop <-chan struct{}) (*trickler, error) {
	c, err := dialFrom(from, addr)
	if err != nil {
		return nil, err
	}
	tr := &trickler{conn: c, closed: make(chan struct{})}
	t.Cleanup(func() { c.Close() })
	go tr.run(every, stop)
	return tr, nil
}

func (tr *trickler) run(every time.Duration, stop <-chan struct{}) {
	defer close(tr.closed)
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	pkt, _ := m.Pack()
	msg := binary.BigEndian.AppendUint16(nil, uint16(len(pkt)))
	msg = append(msg, pkt...)
	buf := make([]byte, 4096)
	for {
		if _, err := tr.conn.Write(msg); err != nil {
			return
		}
		// Wait for the answer, or the next turn: a server that does not
		// serve this connection yet leaves the query unanswered.
		_ = tr.conn.SetReadDeadline(time.Now().Add(every))
		if _, err := io.ReadFull(tr.conn, buf[:2]); err == nil {
			n := int(binary.BigEndian.Uint16(buf[:2]))
			if _, err := io.ReadFull(tr.conn, buf[:n]); err != nil {
				return
			}
			tr.answered.Add(1)
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			return // closed by the server
		}
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
	}
}

// isClosed says whether the server has closed the trickler's connection.
func (tr *trickler) isClosed() bool {
	select {
	case <-tr.closed:
		return true
	default:
		return false
	}
}

// answeredOverTCPFrom polls, within bound, for an answer to a fresh TCP
// query from the address from; it returns the error of the last try.
func answeredOverTCPFrom(from, addr string, bound time.Duration) error {
	c := &dns.Client{Net: "tcp", Timeout: 3 * time.Second,
		Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 3 * time.Second}}
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	var err error
	for deadline := time.Now().Add(bound); time.Now().Before(deadline); {
		var r *dns.Msg
		if r, _, err = c.Exchange(m, addr); err == nil {
			if len(r.Answer) != 2 {
				return fmt.Errorf("answer %v", r)
			}
			return nil
		}
	}
	return err
}

// TestTCPTrickleDoesNotStarveNewClients is the finding of issue 9: 1,100
// TCP connections, each sending a query every 8 s (under the idle
// timeout), from many addresses. A new client from another address is
// answered all the same (with the defaults: the oldest connection of the
// address holding the most makes room).
func TestTCPTrickleDoesNotStarveNewClients(t *testing.T) {
	s := start(t, fixture(), nil)
	stop := make(chan struct{})
	defer close(stop)
	var (
		wg     sync.WaitGroup
		opened atomic.Int64
	)
	for i := range 1100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := fmt.Sprintf("127.0.%d.%d", 10+i/100, 10+i%100) // 11 per /24, 1 per address
			if _, err := startTrickler(t, from, s.Addr(), 8*time.Second, stop); err == nil {
				opened.Add(1)
			}
		}()
	}
	wg.Wait()
	if opened.Load() < 1025 {
		t.Fatalf("only %d trickling connections opened: not the finding", opened.Load())
	}
	if err := answeredOverTCPFrom("127.0.0.3", s.Addr(), 40*time.Second); err != nil {
		t.Fatalf("a new TCP client behind %d trickling connections: %v", opened.Load(), err)
	}
	if n := s.tcpConns.count(netip.Addr{}); n > DefaultTCPMaxConns {
		t.Fatalf("%d connections served, over the cap of %d", n, DefaultTCPMaxConns)
	}
}

// TestTCPPerClientCap: one address opens its cap's worth of trickling
// connections, then one more. The new one is answered and the least
// recently used of the address's is closed; a client from another
// address is answered; the address never holds more than its cap.
func TestTCPPerClientCap(t *testing.T) {
	const cap = 4
	s := start(t, fixture(), func(c *Config) {
		c.TCPMaxConnsPerClient = cap
		c.TCPIdleTimeout, c.TCPMaxLifetime = time.Minute, time.Minute // only the cap at work
	})
	stop := make(chan struct{})
	defer close(stop)
	var held []*trickler
	for i := range cap {
		tr, err := startTrickler(t, "127.0.0.2", s.Addr(), 300*time.Millisecond, stop)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tr)
		waitFor(t, fmt.Sprintf("connection %d answered", i), func() bool { return tr.answered.Load() > 0 })
	}
	// The first one becomes an idle one, used least recently: once each
	// trickler has had three answers more, the server has marked each
	// used after the idle one arrived.
	held[0].conn.Close()
	held[0] = startIdle(t, "127.0.0.2", s.Addr())
	waitFor(t, "the cap's worth held", func() bool { return s.tcpConns.count(netip.MustParseAddr("127.0.0.2")) == cap })
	for i, tr := range held[1:] {
		since := tr.answered.Load()
		waitFor(t, fmt.Sprintf("connection %d used again", i+1), func() bool { return tr.answered.Load() >= since+3 })
	}

	if err := answeredOverTCPFrom("127.0.0.2", s.Addr(), 30*time.Second); err != nil {
		t.Fatalf("a new connection from the address at its cap: %v", err)
	}
	if err := answeredOverTCPFrom("127.0.0.3", s.Addr(), 30*time.Second); err != nil {
		t.Fatalf("a client of another address: %v", err)
	}
	waitFor(t, "the idle connection closed to make room", func() bool { return held[0].isClosed() })
	for i, tr := range held[1:] {
		if tr.isClosed() {
			t.Fatalf("busy connection %d closed, not the idle one", i+1)
		}
	}
	if n := s.tcpConns.count(netip.MustParseAddr("127.0.0.2")); n > cap {
		t.Fatalf("127.0.0.2 holds %d connections, cap %d", n, cap)
	}
}

// startIdle opens a connection that sends nothing.
func startIdle(t testing.TB, from, addr string) *trickler {
	c, err := dialFrom(from, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tr := &trickler{conn: c, closed: make(chan struct{})}
	go func() {
		defer close(tr.closed)
		_, _ = c.Read(make([]byte, 1)) // returns once the server closes it
	}()
	return tr
}

// TestTCPConnectionDeadlines: a trickle of queries keeps a connection no
// longer than its lifetime, an idle one is closed after the idle
// timeout, and one gets at most its count of answers.
func TestTCPConnectionDeadlines(t *testing.T) {
	s := start(t, fixture(), func(c *Config) {
		c.TCPIdleTimeout, c.TCPMaxLifetime, c.TCPMaxQueries = 500*time.Millisecond, 2*time.Second, 1000
	})
	stop := make(chan struct{})
	defer close(stop)
	trickle, err := startTrickler(t, "127.0.0.2", s.Addr(), 200*time.Millisecond, stop)
	if err != nil {
		t.Fatal(err)
	}
	idle := startIdle(t, "127.0.0.4", s.Addr())
	waitFor(t, "the idle connection closed", idle.isClosed)
	waitFor(t, "the trickling connection closed at its lifetime", trickle.isClosed)
	if trickle.answered.Load() < 2 {
		t.Fatalf("the trickle was answered %d times before its end", trickle.answered.Load())
	}

	// At most TCPMaxQueries answers on one connection: five queries sent
	// at once, three answered, then the end.
	s3 := start(t, fixture(), func(c *Config) { c.TCPMaxQueries = 3 })
	c, err := dialFrom("127.0.0.2", s3.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := new(dns.Msg)
	m.SetQuestion("web.service.beacon.", dns.TypeA)
	pkt, _ := m.Pack()
	var msgs []byte
	for range 5 {
		msgs = binary.BigEndian.AppendUint16(msgs, uint16(len(pkt)))
		msgs = append(msgs, pkt...)
	}
	if _, err := c.Write(msgs); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	answers := 0
	for {
		var size [2]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			break
		}
		if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint16(size[:]))); err != nil {
			break
		}
		answers++
	}
	if answers != 3 {
		t.Fatalf("%d answers on a connection allowed 3", answers)
	}
}

// waitFor polls cond for up to 30 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
