package synscan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/sys/unix"
)

// errPrivilege is returned when the process may not open raw sockets.
var errPrivilege = errors.New("synscan needs raw sockets: run the worker as root or give it CAP_NET_RAW (setcap cap_net_raw+ep)")

func privilegeError(op string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s: %w (%v)", op, errPrivilege, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// txSocket sends probes in batches with sendmmsg(2): on an AF_PACKET
// socket whole Ethernet frames, bypassing the qdisc (masscan's and zmap's
// fast path); on a raw IP socket (IPPROTO_RAW, header included) IP
// datagrams that the kernel routes and resolves itself, the fallback for
// targets with no single next hop.
//
// One txSocket is shared by every sender; the message headers a call
// passes to the kernel are the caller's (mmsgBuf), since two senders
// writing one set of headers while the other's sendmmsg reads them send
// one probe twice and another never, or fail with EINVAL.
type txSocket struct {
	fd  int
	raw bool // raw IP socket: frames are sent from the IP header on
}

// mmsgBuf holds the headers of one sendmmsg call; each batcher owns one.
type mmsgBuf struct {
	msgs []mmsghdr
	iov  []unix.Iovec
	// names holds one destination address per message (raw sockets).
	names4 []unix.RawSockaddrInet4
	names6 []unix.RawSockaddrInet6
}

// mmsghdr is struct mmsghdr; Go pads it to the alignment of its pointers
// as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

const sndBuf = 4 << 20

func openPacketTX(ifindex int) (*txSocket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: send only
	if err != nil {
		return nil, privilegeError("open AF_PACKET socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind AF_PACKET socket: %w", err)
	}
	// Best effort: older kernels lack the bypass, and a small send
	// buffer only makes sendmmsg block sooner.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf)
	return &txSocket{fd: fd}, nil
}

func openRawTX(v6 bool) (*txSocket, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, privilegeError("open raw IP socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndBuf)
	return &txSocket{fd: fd, raw: true}, nil
}

func (t *txSocket) Close() error { return unix.Close(t.fd) }

// send transmits frames (each a full frame built from a template: the raw
// socket skips the Ethernet header). It returns how many were handed to
// the kernel, and how many were refused because a queue was full
// (ENOBUFS: the probe is lost, as on the wire, and retried later).
func (t *txSocket) send(m *mmsgBuf, frames [][]byte, dsts []netip.Addr) (sent, dropped int, err error) {
	n := len(frames)
	if cap(m.msgs) < n {
		m.msgs = make([]mmsghdr, n)
		m.iov = make([]unix.Iovec, n)
		m.names4 = make([]unix.RawSockaddrInet4, n)
		m.names6 = make([]unix.RawSockaddrInet6, n)
	}
	msgs, iov := m.msgs[:n], m.iov[:n]
	for i, f := range frames {
		if t.raw {
			f = f[ethLen:]
		}
		iov[i].Base = &f[0]
		iov[i].SetLen(len(f))
		msgs[i] = mmsghdr{}
		msgs[i].hdr.Iov = &iov[i]
		msgs[i].hdr.SetIovlen(1)
		if t.raw {
			a := dsts[i]
			if a.Is4() {
				m.names4[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
				msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names4[i]))
				msgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
			} else {
				m.names6[i] = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
				msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names6[i]))
				msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
			}
		}
	}
	for off := 0; off < n; {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(t.fd), uintptr(unsafe.Pointer(&msgs[off])), uintptr(n-off), 0, 0, 0)
		switch {
		case errno == 0:
			off += int(r)
			sent += int(r)
		case errno == unix.EINTR:
		case errno == unix.ENOBUFS || errno == unix.EAGAIN:
			// The first message was refused: skip it, keep going.
			off++
			dropped++
			if errno == unix.EAGAIN {
				time.Sleep(50 * time.Microsecond)
			}
		default:
			runtime.KeepAlive(frames)
			return sent, dropped, fmt.Errorf("send probes: %w", errno)
		}
	}
	runtime.KeepAlive(frames)
	return sent, dropped, nil
}

// rxSocket receives replies through a TPACKET_V3 ring (gopacket's
// afpacket, pure Go) on an AF_PACKET SOCK_DGRAM socket, so packets start
// at the network header on every kind of interface, filtered in the
// kernel by replyFilter.
type rxSocket struct {
	tp *afpacket.TPacket
}

// openRX opens the receive ring on ifname ("" listens on every interface)
// for replies to source ports [lo, hi], of IPv4, IPv6 or both.
//
// A socket for one protocol sees only packets received: the kernel hands
// every packet sent (each probe, and each reset the kernel sends for a
// SYN-ACK) to the sockets of all protocols only, which costs a clone and
// a filter run per packet in the sending system call.
func openRX(ifname string, lo, hi uint16, v4, v6 bool) (*rxSocket, error) {
	proto := uint16(unix.ETH_P_ALL)
	switch {
	case v4 && !v6:
		proto = unix.ETH_P_IP
	case v6 && !v4:
		proto = unix.ETH_P_IPV6
	}
	opts := []any{
		afpacket.OptProtocol(proto),
		afpacket.OptSocketType(afpacket.SocketDgram),
		afpacket.OptTPacketVersion(afpacket.TPacketVersion3),
		// Many small blocks: the kernel hands a block over when it is
		// full or its timeout passes, so at a low reply rate each block
		// holds few packets; 256 blocks of 128 KiB (32 MiB) absorb the
		// receiver being descheduled for a second even then, and a
		// quarter of a million replies at full speed.
		afpacket.OptFrameSize(2048),
		afpacket.OptBlockSize(128 << 10),
		afpacket.OptNumBlocks(256),
		afpacket.OptBlockTimeout(4 * time.Millisecond),
		afpacket.OptPollTimeout(20 * time.Millisecond),
	}
	if ifname != "" {
		opts = append(opts, afpacket.OptInterface(ifname))
	}
	tp, err := afpacket.NewTPacket(opts...)
	if err != nil {
		return nil, privilegeError("open receive ring", err)
	}
	prog, err := replyFilter(lo, hi)
	if err != nil {
		tp.Close()
		return nil, fmt.Errorf("assemble reply filter: %w", err)
	}
	if err := tp.SetBPF(prog); err != nil {
		tp.Close()
		return nil, fmt.Errorf("attach reply filter: %w", err)
	}
	return &rxSocket{tp: tp}, nil
}

// read returns the next packet, or nil after the poll timeout so that the
// caller can check whether to stop. The bytes are valid until the next
// call.
func (r *rxSocket) read() ([]byte, error) {
	data, _, err := r.tp.ZeroCopyReadPacketData()
	if errors.Is(err, afpacket.ErrTimeout) {
		return nil, nil
	}
	return data, err
}

// drops returns how many replies the kernel dropped because the ring was
// full.
func (r *rxSocket) drops() uint64 {
	_, s3, err := r.tp.SocketStats()
	if err != nil {
		return 0
	}
	return uint64(s3.Drops())
}

func (r *rxSocket) Close() { r.tp.Close() }

// ifaceName returns the name of interface ifindex.
func ifaceName(ifindex int) (*net.Interface, error) {
	ifi, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("interface %d: %w", ifindex, err)
	}
	return ifi, nil
}
