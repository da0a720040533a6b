package faults

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A delayer holds the packets iptables sends to one NFQUEUE for a fixed
// time, then accepts them, in arrival order. It stands in for netem's
// delay on kernels without sch_netem. It speaks nfnetlink_queue directly
// over a netlink socket opened inside the bridge's namespace.

// nfnetlink_queue constants (linux/netfilter/nfnetlink_queue.h).
const (
	nfnlSubsysQueue = 3
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxlen = 3
	nfqnlCfgCmdBind    = 1
	nfqnlCfgCmdUnbind  = 2
	nfqnlCopyMeta      = 1

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfAccept       = 1

	nlaTypeMask = 0x3fff
)

type delayer struct {
	fd    int
	queue uint16
	delay time.Duration

	pending chan held
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	seq     uint32
	sendMu  sync.Mutex
}

type held struct {
	id  uint32
	due time.Time
}

// startDelayer binds queue in the namespace at nsPath.
func startDelayer(nsPath string, queue uint16, delay time.Duration) (*delayer, error) {
	fd := -1
	err := inNetns(nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("netlink: %v", err)
	}
	d := &delayer{fd: fd, queue: queue, delay: delay, pending: make(chan held, 1<<16), stop: make(chan struct{})}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	cmd := []byte{nfqnlCfgCmdBind, 0, 0, 0}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, 0)
	params[4] = nfqnlCopyMeta
	maxlen := binary.BigEndian.AppendUint32(nil, 1<<16)
	for _, a := range [][]byte{nlattr(nfqaCfgCmd, cmd), nlattr(nfqaCfgParams, params), nlattr(nfqaCfgQueueMaxlen, maxlen)} {
		if err := d.request(nfqnlMsgConfig, a); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("binding queue %d: %v", queue, err)
		}
	}
	d.wg.Add(2)
	go d.read()
	go d.release()
	return d, nil
}

// request sends a config message with an ack and waits for the ack.
func (d *delayer) request(msgType uint16, attrs []byte) error {
	d.sendMu.Lock()
	d.seq++
	seq := d.seq
	msg := nfqMsg(msgType, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, d.queue, attrs)
	err := unix.Sendto(d.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	d.sendMu.Unlock()
	if err != nil {
		return err
	}
	buf := make([]byte, 8192)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:6])
			mseq := binary.NativeEndian.Uint32(b[8:12])
			if typ == unix.NLMSG_ERROR && mseq == seq && l >= unix.NLMSG_HDRLEN+4 {
				if code := int32(binary.NativeEndian.Uint32(b[16:20])); code != 0 {
					return unix.Errno(-code)
				}
				return nil
			}
			b = b[min(nlmAlign(l), len(b)):]
		}
	}
	return errors.New("no answer from nfnetlink_queue")
}

// read takes queued packets' ids and hands them to release with their
// due time.
func (d *delayer) read() {
	defer d.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		n, _, err := unix.Recvfrom(d.fd, buf, 0)
		if err != nil {
			continue // timeout (to see stop), EINTR, ENOBUFS
		}
		now := time.Now()
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:6])
			if typ == nfnlSubsysQueue<<8|nfqnlMsgPacket {
				if id, ok := packetID(b[unix.NLMSG_HDRLEN+4 : l]); ok {
					select {
					case d.pending <- held{id: id, due: now.Add(d.delay)}:
					default:
						d.verdict(id) // too many held: let it through now
					}
				}
			}
			b = b[min(nlmAlign(l), len(b)):]
		}
	}
}

// release accepts each packet at its due time; on stop, at once.
func (d *delayer) release() {
	defer d.wg.Done()
	for {
		select {
		case p := <-d.pending:
			if wait := time.Until(p.due); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-d.stop:
					t.Stop()
				}
			}
			d.verdict(p.id)
		case <-d.stop:
			for {
				select {
				case p := <-d.pending:
					d.verdict(p.id)
				default:
					return
				}
			}
		}
	}
}

func (d *delayer) verdict(id uint32) {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:4], nfAccept)
	binary.BigEndian.PutUint32(v[4:8], id)
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	msg := nfqMsg(nfqnlMsgVerdict, unix.NLM_F_REQUEST, 0, d.queue, nlattr(nfqaVerdictHdr, v))
	_ = unix.Sendto(d.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// Close accepts what it holds, unbinds the queue and closes the socket.
// The iptables rules feeding it should be gone first.
func (d *delayer) Close() {
	d.once.Do(func() {
		close(d.stop)
		d.wg.Wait()
		_ = d.request(nfqnlMsgConfig, nlattr(nfqaCfgCmd, []byte{nfqnlCfgCmdUnbind, 0, 0, 0}))
		unix.Close(d.fd)
	})
}

// packetID finds NFQA_PACKET_HDR's packet id among the attributes.
func packetID(attrs []byte) (uint32, bool) {
	for len(attrs) >= 4 {
		l := int(binary.NativeEndian.Uint16(attrs[0:2]))
		typ := binary.NativeEndian.Uint16(attrs[2:4]) & nlaTypeMask
		if l < 4 || l > len(attrs) {
			return 0, false
		}
		if typ == nfqaPacketHdr && l >= 8 {
			return binary.BigEndian.Uint32(attrs[4:8]), true
		}
		step := nlaAlign(l)
		if step > len(attrs) {
			break
		}
		attrs = attrs[step:]
	}
	return 0, false
}

// nfqMsg builds nlmsghdr + nfgenmsg + attrs for the queue subsystem.
func nfqMsg(msgType, flags uint16, seq uint32, queue uint16, attrs []byte) []byte {
	l := unix.NLMSG_HDRLEN + 4 + len(attrs)
	b := make([]byte, 0, l)
	b = binary.NativeEndian.AppendUint32(b, uint32(l))
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysQueue<<8|msgType)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, unix.AF_UNSPEC, 0) // nfgenmsg: family, version
	b = binary.BigEndian.AppendUint16(b, queue)
	return append(b, attrs...)
}

func nlattr(typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b := make([]byte, 0, nlaAlign(l))
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b) < nlaAlign(l) {
		b = append(b, 0)
	}
	return b
}

func nlaAlign(l int) int { return (l + 3) &^ 3 }
func nlmAlign(l int) int { return (l + 3) &^ 3 }
