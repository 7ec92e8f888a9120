package synscan

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// route is how the kernel would send to one destination: "ip route get".
type route struct {
	ifindex int
	gateway netip.Addr // invalid when the destination is on-link
	src     netip.Addr
	local   bool // the destination is an address of this host
}

// lookupRoute asks the kernel (netlink RTM_GETROUTE) for the route to dst,
// so that policy routing, local and more specific routes are honoured as
// the kernel itself would honour them.
func lookupRoute(dst netip.Addr) (route, error) {
	family, alen := unix.AF_INET, 4
	if dst.Is6() {
		family, alen = unix.AF_INET6, 16
	}
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg+unix.SizeofRtAttr+alen)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETROUTE)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], 1)
	rt := req[unix.SizeofNlMsghdr:]
	rt[0] = byte(family)
	rt[1] = byte(alen * 8) // dst_len
	at := rt[unix.SizeofRtMsg:]
	binary.NativeEndian.PutUint16(at[0:], uint16(unix.SizeofRtAttr+alen))
	binary.NativeEndian.PutUint16(at[2:], unix.RTA_DST)
	copy(at[unix.SizeofRtAttr:], dst.AsSlice())

	msgs, err := netlinkRequest(req)
	if err != nil {
		return route{}, fmt.Errorf("route to %s: %w", dst, err)
	}
	for _, m := range msgs {
		if m.typ != unix.RTM_NEWROUTE || len(m.data) < unix.SizeofRtMsg {
			continue
		}
		var r route
		switch m.data[7] { // rtm_type
		case unix.RTN_UNICAST:
		case unix.RTN_LOCAL:
			r.local = true
		default:
			return route{}, fmt.Errorf("route to %s: no route (type %d)", dst, m.data[7])
		}
		attrs, err := parseAttrs(m.data[unix.SizeofRtMsg:])
		if err != nil {
			return route{}, fmt.Errorf("route to %s: %w", dst, err)
		}
		for _, a := range attrs {
			switch a.typ {
			case unix.RTA_OIF:
				if len(a.val) >= 4 {
					r.ifindex = int(binary.NativeEndian.Uint32(a.val))
				}
			case unix.RTA_GATEWAY:
				r.gateway, _ = netip.AddrFromSlice(a.val)
			case unix.RTA_PREFSRC:
				r.src, _ = netip.AddrFromSlice(a.val)
			}
		}
		if r.ifindex == 0 {
			return route{}, fmt.Errorf("route to %s: no output interface", dst)
		}
		if !r.src.IsValid() {
			if r.src, err = sourceFor(dst); err != nil {
				return route{}, err
			}
		}
		r.gateway = r.gateway.Unmap()
		r.src = r.src.Unmap()
		return r, nil
	}
	return route{}, fmt.Errorf("route to %s: no answer from the kernel", dst)
}

// sourceFor returns the source address the kernel picks for dst, by
// connecting a UDP socket (which sends nothing).
func sourceFor(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("source address for %s: %w", dst, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// neighbor returns the link-layer address the kernel's neighbour table
// (ARP, NDP) holds for addr on ifindex.
func neighbor(ifindex int, addr netip.Addr) (net.HardwareAddr, bool, error) {
	family := unix.AF_INET
	if addr.Is6() {
		family = unix.AF_INET6
	}
	req := make([]byte, unix.SizeofNlMsghdr+unix.SizeofNdMsg)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETNEIGH)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:], 2)
	req[unix.SizeofNlMsghdr] = byte(family)
	binary.NativeEndian.PutUint32(req[unix.SizeofNlMsghdr+4:], uint32(ifindex))
	msgs, err := netlinkRequest(req)
	if err != nil {
		return nil, false, fmt.Errorf("neighbours of %s: %w", addr, err)
	}
	const usable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT | unix.NUD_NOARP
	for _, m := range msgs {
		if m.typ != unix.RTM_NEWNEIGH || len(m.data) < unix.SizeofNdMsg {
			continue
		}
		if int(int32(binary.NativeEndian.Uint32(m.data[4:]))) != ifindex {
			continue
		}
		state := binary.NativeEndian.Uint16(m.data[8:])
		attrs, err := parseAttrs(m.data[unix.SizeofNdMsg:])
		if err != nil {
			continue
		}
		var dst netip.Addr
		var ll net.HardwareAddr
		for _, a := range attrs {
			switch a.typ {
			case unix.NDA_DST:
				dst, _ = netip.AddrFromSlice(a.val)
			case unix.NDA_LLADDR:
				ll = append(net.HardwareAddr(nil), a.val...)
			}
		}
		if dst.Unmap() == addr && state&usable != 0 && len(ll) == 6 {
			return ll, true, nil
		}
	}
	return nil, false, nil
}

// resolveNeighbor returns the MAC of nextHop, asking the kernel to resolve
// it when its table has none: a UDP datagram to probe (a scanned address,
// never anything else, so no packet leaves for an address outside the
// scope; the kernel resolves the next hop on the way) makes it send the ARP
// request or neighbour solicitation.
func resolveNeighbor(ctx context.Context, ifindex int, nextHop, probe netip.Addr) (net.HardwareAddr, error) {
	deadline := time.Now().Add(3 * time.Second)
	for attempt := 0; ; attempt++ {
		mac, ok, err := neighbor(ifindex, nextHop)
		if err != nil {
			return nil, err
		} else if ok {
			return mac, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("resolve the link-layer address of next hop %s: no answer", nextHop)
		}
		if attempt%20 == 0 {
			if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(probe, 9))); err == nil {
				_, _ = c.Write([]byte{0})
				c.Close()
			}
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func netlinkRequest(req []byte) ([]nlMsg, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var out []nlMsg
	for {
		buf := make([]byte, 1<<16) // messages point into it: one per read
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := parseNetlink(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.data)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				return out, nil
			}
			out = append(out, m)
			if m.flags&unix.NLM_F_MULTI == 0 {
				return out, nil
			}
		}
	}
}

// parseAttrs splits netlink route attributes.
func parseAttrs(b []byte) ([]nlAttr, error) {
	var out []nlAttr
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		if l < unix.SizeofRtAttr || l > len(b) {
			return nil, errors.New("netlink: bad attribute length")
		}
		out = append(out, nlAttr{typ: binary.NativeEndian.Uint16(b[2:]) & 0x3fff, val: b[unix.SizeofRtAttr:l]})
		al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return out, nil
}

// nlMsg is one netlink message; nlAttr one route attribute.
type nlMsg struct {
	typ, flags uint16
	data       []byte
}

type nlAttr struct {
	typ uint16
	val []byte
}

func parseNetlink(b []byte) ([]nlMsg, error) {
	var out []nlMsg
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return nil, errors.New("netlink: bad message length")
		}
		out = append(out, nlMsg{
			typ:   binary.NativeEndian.Uint16(b[4:]),
			flags: binary.NativeEndian.Uint16(b[6:]),
			data:  b[unix.SizeofNlMsghdr:l],
		})
		al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return out, nil
}
