//go:build linux

package embedded

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// The two halves of how an agent finds a silent member within about 2 s
// (see newClient): the member pings a quiet client connection every
// second, and the agent's connections probe with TCP keepalive after a
// second of silence. (Finding a member cut off by the network takes
// dropped packets: faults.TestProxyFailoverWithinNodeTTL.)
func TestMemberPingsQuietClients(t *testing.T) {
	var b [3]byte
	_, _ = rand.Read(b[:])
	ip := fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[2]%250)
	o := Options{
		Name:      "m1",
		DataDir:   t.TempDir(),
		ClientURL: "http://" + ip + ":2379",
		PeerURL:   "http://" + ip + ":2380",
		Logger:    zap.NewNop(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	// A client through a relay that counts what the member sends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var fromMember atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m, err := net.Dial("tcp", ip+":2379")
			if err != nil {
				c.Close()
				return
			}
			go pump(m, c, nil)
			go pump(c, m, &fromMember)
		}
	}()
	cli, err := newClient(o, []string{"http://" + ln.Addr().String()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}

	// Quiet for 3.5 s: the member pings about every second (an HTTP/2
	// PING frame is 17 bytes); with etcd's default it would not for 2 h.
	start := fromMember.Load()
	time.Sleep(3500 * time.Millisecond)
	if got := fromMember.Load() - start; got < 3*17 {
		t.Fatalf("the member sent %d bytes to a quiet client in 3.5s, want its pings (3 × 17 bytes or more)", got)
	}

	// The agent's connections probe after a second of silence, every second.
	conn, err := dialMember(ctx, ip+":2379")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var keepalive, idle, intvl int
	var serr error
	err = raw.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, err := syscall.GetsockoptInt(int(fd), level, opt)
			if err != nil && serr == nil {
				serr = err
			}
			return v
		}
		keepalive = get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		intvl = get(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
	})
	if err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if keepalive != 1 || idle != 1 || intvl != 1 {
		t.Fatalf("member connection: SO_KEEPALIVE %d, TCP_KEEPIDLE %ds, TCP_KEEPINTVL %ds; want 1, 1s, 1s", keepalive, idle, intvl)
	}

	// A unix socket endpoint still dials (clientv3 hands gRPC
	// unix://absolute-path).
	sock := t.TempDir() + "/s"
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer uln.Close()
	c, err := dialMember(ctx, "unix://"+sock)
	if err != nil {
		t.Fatalf("dial unix://%s: %v", sock, err)
	}
	c.Close()
}

func pump(dst, src net.Conn, count *atomic.Int64) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if count != nil {
				count.Add(int64(n))
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
