package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DNSOptions tune `beacon bench dns`.
type DNSOptions struct {
	Addr        string        // the DNS server under test, "127.0.0.1:8600"
	Name        string        // the name asked, "web.service.beacon."
	Type        string        // the type asked: SRV (default), A, AAAA, TXT, ...
	Duration    time.Duration // of the load on each server; default 10s
	Rate        int           // target queries/s over all sockets; 0 = as fast as possible
	Sockets     int           // client UDP sockets; default 8
	Concurrency int           // queries outstanding per socket when as fast as possible; default 4
	// PlainProcess runs the plain server in a process of its own
	// (`beacon bench plain-dns`, see PlainDNS), as the agent runs in its
	// own, rather than in this one beside the loader.
	PlainProcess bool
}

// withDefaults fills in the zero fields.
func (o DNSOptions) withDefaults() DNSOptions {
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Sockets <= 0 {
		o.Sockets = 8
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	return o
}

// loadMode says how the load is offered.
func loadMode(o DNSOptions) string {
	if o.Rate > 0 {
		return fmt.Sprintf("%d sockets at %d queries/s in all", o.Sockets, o.Rate)
	}
	return fmt.Sprintf("%d sockets × %d outstanding, as fast as possible", o.Sockets, o.Concurrency)
}

// dnsResult is one server's figures under the load.
type dnsResult struct {
	sent, answered, lost, bad int64
	elapsed                   time.Duration
	lat                       []time.Duration // of the answered queries, sorted
	replyBytes                int
}

func (r dnsResult) qps() float64 { return float64(r.answered) / r.elapsed.Seconds() }

func (r dnsResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(int(p*float64(len(r.lat))), len(r.lat)-1)]
}

// DNS loads the DNS server at o.Addr over UDP with one question, then, in
// the same run, a minimal miekg/dns server on 127.0.0.1 that returns the
// same answer (the one the server under test gave, glue and all) fixed,
// loaded the same way; it prints both and the ratios.
func DNS(ctx context.Context, w io.Writer, o DNSOptions) error {
	_, err := dnsRun(ctx, w, o)
	return err
}

// DNSFigures are the server under test's figures from one run.
type DNSFigures struct {
	QPS      float64
	P50, P99 time.Duration
}

func dnsRun(ctx context.Context, w io.Writer, o DNSOptions) (DNSFigures, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8600"
	}
	if o.Type == "" {
		o.Type = "SRV"
	}
	qtype, ok := dns.StringToType[strings.ToUpper(o.Type)]
	if !ok {
		return DNSFigures{}, fmt.Errorf("bench dns: %q is not a DNS type", o.Type)
	}
	if o.Name == "" {
		return DNSFigures{}, errors.New("bench dns: no name to ask")
	}
	o.Name = dns.Fqdn(o.Name)
	o = o.withDefaults()
	if o.Rate < 0 {
		return DNSFigures{}, errors.New("bench dns: a negative rate")
	}

	// The question, as a modern stub asks it: RD and EDNS0 at 1232.
	q := new(dns.Msg)
	q.SetQuestion(o.Name, qtype)
	q.SetEdns0(1232, false)
	query, err := q.Pack()
	if err != nil {
		return DNSFigures{}, fmt.Errorf("bench dns: %w", err)
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	probe, _, err := c.ExchangeContext(ctx, q, o.Addr)
	if err != nil {
		return DNSFigures{}, fmt.Errorf("bench dns: %s does not answer: %w", o.Addr, err)
	}
	if probe.Rcode != dns.RcodeSuccess || len(probe.Answer) == 0 {
		return DNSFigures{}, fmt.Errorf("bench dns: %s answers %s %s with %s and %d records; register an instance first",
			o.Addr, o.Name, o.Type, dns.RcodeToString[probe.Rcode], len(probe.Answer))
	}

	var plainAddr string
	if o.PlainProcess {
		cmd, addr, err := dnsPlainProcess(o)
		if err != nil {
			return DNSFigures{}, fmt.Errorf("bench dns: plain server: %w", err)
		}
		defer stop(cmd)
		plainAddr = addr
	} else {
		plain, addr, err := dnsPlainServer(probe)
		if err != nil {
			return DNSFigures{}, fmt.Errorf("bench dns: plain server: %w", err)
		}
		defer func() { _ = plain.Shutdown() }()
		plainAddr = addr
	}

	warm := min(o.Duration/10, time.Second)
	var beacon, fixed dnsResult
	for _, run := range []struct {
		addr string
		res  *dnsResult
	}{{o.Addr, &beacon}, {plainAddr, &fixed}} {
		if _, err := dnsLoad(ctx, run.addr, query, o, warm); err != nil {
			return DNSFigures{}, err
		}
		if *run.res, err = dnsLoad(ctx, run.addr, query, o, o.Duration); err != nil {
			return DNSFigures{}, err
		}
	}

	fmt.Fprintf(w, "beacon bench dns: %s %s over UDP, %s, %s per server\n", dns.TypeToString[qtype], o.Name, loadMode(o), o.Duration)
	fmt.Fprintf(w, "answer: %d records, %d additional, %d bytes\n\n", len(probe.Answer), len(dnsGlue(probe)), beacon.replyBytes)
	fmt.Fprintf(w, "%-28s %12s %9s %9s %9s %8s\n", "", "queries/s", "p50 ms", "p99 ms", "lost", "errors")
	row := func(label string, r dnsResult) {
		fmt.Fprintf(w, "%-28s %12.0f %9.3f %9.3f %9d %8d\n", label, r.qps(), ms(r.pct(0.50)), ms(r.pct(0.99)), r.lost, r.bad)
	}
	row("beacon "+o.Addr, beacon)
	row("plain miekg/dns, fixed", fixed)
	qpsRatio := beacon.qps() / fixed.qps()
	p99Ratio := float64(beacon.pct(0.99)) / float64(max(fixed.pct(0.99), 1))
	fmt.Fprintf(w, "%-28s %11.2fx %9s %8.2fx\n\n", "ratio beacon/plain", qpsRatio, "", p99Ratio)

	if o.Rate > 0 {
		sendRate := float64(beacon.sent) / beacon.elapsed.Seconds()
		fmt.Fprintf(w, "target: p99 < 2 ms at %d queries/s: %s (sent %.0f/s)\n", o.Rate,
			verdict(beacon.pct(0.99) < 2*time.Millisecond && sendRate >= 0.95*float64(o.Rate), fmt.Sprintf("p99 %.3f ms", ms(beacon.pct(0.99)))), sendRate)
	} else {
		fmt.Fprintf(w, "target: queries/s ≥ 0.9× plain: %s\n", verdict(qpsRatio >= 0.9, fmt.Sprintf("%.2fx", qpsRatio)))
	}
	if beacon.replyBytes != fixed.replyBytes {
		fmt.Fprintf(w, "note: replies differ in size (%d and %d bytes)\n", beacon.replyBytes, fixed.replyBytes)
	}
	where := "in this process, beside the loader"
	if o.PlainProcess {
		where = "in a process of its own, like the agent"
	}
	fmt.Fprintf(w, "plain: miekg/dns's server with its defaults (one UDP socket, a goroutine per query) %s, returning %s's answer fixed.\n", where, o.Addr)
	if n := runtime.NumCPU(); n <= 4 {
		fmt.Fprintf(w, "note: %d CPUs: the loader shares them with the server it loads, so both rows are lower bounds.\n", n)
		if !o.PlainProcess {
			fmt.Fprintf(w, "note: the plain server shares the loader's process and scheduler, the agent does not: on few CPUs that favours plain; PlainProcess evens it.\n")
		}
	}
	return DNSFigures{QPS: beacon.qps(), P50: beacon.pct(0.50), P99: beacon.pct(0.99)}, nil
}

// dnsPlainServer answers every query on 127.0.0.1 with the records of
// answer: the plain way, miekg/dns's server with a handler and nothing else.
func dnsPlainServer(answer *dns.Msg) (*dns.Server, string, error) {
	glue := dnsGlue(answer)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.Compress = true
		m.Answer = answer.Answer
		m.Ns = answer.Ns
		m.Extra = glue
		if o := r.IsEdns0(); o != nil {
			m.SetEdns0(1232, o.Do())
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		return nil, "", err
	}
	return srv, pc.LocalAddr().String(), nil
}

// PlainDNS is the plain server of `beacon bench dns` as a process of its
// own: it asks from for name and qtype once, prints the address it
// listens on (127.0.0.1, a free port) as a line to w, then answers every
// query with that answer, fixed, until ctx ends.
func PlainDNS(ctx context.Context, w io.Writer, from, name, qtype string) error {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return fmt.Errorf("%q is not a DNS type", qtype)
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), t)
	q.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	answer, _, err := c.ExchangeContext(ctx, q, from)
	if err != nil {
		return err
	}
	srv, addr, err := dnsPlainServer(answer)
	if err != nil {
		return err
	}
	defer func() { _ = srv.Shutdown() }()
	if _, err := fmt.Fprintln(w, addr); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// dnsPlainProcess starts `beacon bench plain-dns` and returns it with the
// address it serves on.
func dnsPlainProcess(o DNSOptions) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, "bench", "plain-dns", "--from", o.Addr, "--name", o.Name, "--type", o.Type)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop(cmd)
		return nil, "", fmt.Errorf("%s bench plain-dns printed no address: %v", self, err)
	}
	return cmd, strings.TrimSpace(line), nil
}

// dnsGlue is the additional section without the OPT record.
func dnsGlue(m *dns.Msg) []dns.RR {
	var glue []dns.RR
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			glue = append(glue, rr)
		}
	}
	return glue
}

// dnsLoad runs the load on one server for d: o.Sockets connected UDP
// sockets, each either keeping o.Concurrency queries outstanding (one
// goroutine per socket: send, read, send again) or, with o.Rate, sending
// at its share of the rate while another goroutine reads. Responses are
// matched by id; a query unanswered after dnsLossTimeout is lost.
func dnsLoad(ctx context.Context, addr string, query []byte, o DNSOptions, d time.Duration) (dnsResult, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return dnsResult{}, err
	}
	conns := make([]*net.UDPConn, o.Sockets)
	for i := range conns {
		if conns[i], err = net.DialUDP("udp", nil, raddr); err != nil {
			return dnsResult{}, err
		}
		_ = conns[i].SetReadBuffer(1 << 20)
		defer conns[i].Close()
	}
	results := make([]dnsResult, len(conns))
	start := time.Now()
	end := start.Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(end) {
		end = dl
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &dnsSocket{conn: c, query: slices.Clone(query), start: start}
			s.lat = make([]time.Duration, 0, 1<<16)
			if o.Rate > 0 {
				s.paced(ctx, end, float64(o.Rate)/float64(len(conns)))
			} else {
				s.closedLoop(ctx, end, o.Concurrency)
			}
			results[i] = s.dnsResult
		}()
	}
	wg.Wait()
	all := dnsResult{elapsed: end.Sub(start)}
	for _, r := range results {
		all.sent += r.sent
		all.answered += r.answered
		all.lost += r.lost
		all.bad += r.bad
		all.lat = append(all.lat, r.lat...)
		all.replyBytes = max(all.replyBytes, r.replyBytes)
	}
	slices.Sort(all.lat)
	if all.answered == 0 {
		return all, fmt.Errorf("bench dns: %s answered no query", addr)
	}
	return all, ctx.Err()
}

// dnsLossTimeout: a query not answered within it is lost.
const dnsLossTimeout = 250 * time.Millisecond

// dnsSocket is one client socket of the load.
type dnsSocket struct {
	dnsResult
	conn   *net.UDPConn
	query  []byte
	start  time.Time
	id     uint16
	sentAt [1 << 16]atomic.Int64 // ns since start + 1, per id; 0: not outstanding
	out    atomic.Int64          // outstanding
}

func (s *dnsSocket) now() int64 { return int64(time.Since(s.start)) + 1 }

// send sends the query under the next id.
func (s *dnsSocket) send() {
	s.id++
	binary.BigEndian.PutUint16(s.query, s.id)
	if s.sentAt[s.id].Swap(s.now()) != 0 {
		s.lost++ // the id came round while still outstanding
	} else {
		s.out.Add(1)
	}
	s.sent++
	if _, err := s.conn.Write(s.query); err != nil {
		s.bad++
	}
}

// receive records a reply; false when it answers nothing outstanding.
func (s *dnsSocket) receive(b []byte) bool {
	if len(b) < 12 {
		return false
	}
	at := s.sentAt[binary.BigEndian.Uint16(b)].Swap(0)
	if at == 0 {
		return false
	}
	s.out.Add(-1)
	s.answered++
	s.lat = append(s.lat, time.Duration(s.now()-at))
	if s.replyBytes == 0 {
		s.replyBytes = len(b)
	}
	if b[3]&0x0f != dns.RcodeSuccess || b[2]&0x02 != 0 { // an error, or TC
		s.bad++
	}
	return true
}

// expire forgets the queries outstanding for longer than age (all of them
// with age 0) and returns how many.
func (s *dnsSocket) expire(age time.Duration) int {
	n := 0
	if s.out.Load() == 0 {
		return 0
	}
	limit := s.now() - int64(age)
	for i := range s.sentAt {
		if at := s.sentAt[i].Load(); at != 0 && at <= limit && s.sentAt[i].CompareAndSwap(at, 0) {
			n++
		}
	}
	s.out.Add(-int64(n))
	return n
}

// closedLoop keeps window queries outstanding: each answer sends the next.
func (s *dnsSocket) closedLoop(ctx context.Context, end time.Time, window int) {
	buf := make([]byte, 65535)
	for range window {
		s.send()
	}
	var deadlineSet, swept time.Time
	for {
		now := time.Now()
		if now.After(end) || ctx.Err() != nil {
			s.expire(0) // in flight at the end: neither answered nor lost
			return
		}
		// A deadline costs a timer: refresh it every few ms only.
		if now.Sub(deadlineSet) > 10*time.Millisecond {
			_ = s.conn.SetReadDeadline(now.Add(dnsLossTimeout))
			deadlineSet = now
		}
		// Lost queries are replaced, so the window stays full.
		if now.Sub(swept) > 100*time.Millisecond {
			swept = now
			for range s.expire(dnsLossTimeout) {
				s.lost++
				s.send()
			}
		}
		n, err := s.conn.Read(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				s.bad++
			}
			swept = time.Time{}
			continue
		}
		if s.receive(buf[:n]) {
			s.send()
		}
	}
}

// paced sends at rate on schedule, whatever the answers, while a second
// goroutine reads them.
func (s *dnsSocket) paced(ctx context.Context, end time.Time, rate float64) {
	interval := time.Duration(float64(time.Second) / rate)
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the reader: until all is answered or lost after the end
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			_ = s.conn.SetReadDeadline(time.Now().Add(dnsLossTimeout))
			n, err := s.conn.Read(buf)
			if err == nil {
				s.receive(buf[:n])
			}
			if done.Load() && (s.out.Load() == 0 || time.Now().After(end.Add(dnsLossTimeout))) {
				return
			}
		}
	}()
	// The sender: on schedule, catching up in a burst when behind, so
	// that a slow server never slows the offered load.
	var sent, bad int64
	next := time.Now()
	for next.Before(end) && ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		for now := time.Now(); !next.After(now) && next.Before(end); next = next.Add(interval) {
			s.id++
			binary.BigEndian.PutUint16(s.query, s.id)
			s.sentAt[s.id].Store(s.now())
			s.out.Add(1)
			sent++
			if _, err := s.conn.Write(s.query); err != nil {
				bad++
			}
		}
	}
	done.Store(true)
	wg.Wait()
	s.sent += sent
	s.bad += bad
	s.lost += int64(s.expire(0))
}
