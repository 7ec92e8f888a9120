package synscan

import (
	"encoding/binary"
	"net/netip"
)

// replyKind is what a reply says about the probed port.
type replyKind uint8

const (
	replySynAck  replyKind = iota + 1 // open
	replyRst                          // closed
	replyUnreach                      // filtered: an ICMP destination unreachable quoting the probe
)

// reply is one packet that may answer a probe, in the probe's terms.
type reply struct {
	kind   replyKind
	target netip.Addr // the probed address
	tport  uint16     // the probed port
	us     netip.Addr // the address the probe came from
	uport  uint16     // the source port of the probe
	seq    uint32     // the probe's sequence number as the reply shows it
	// peerSeq is the target's sequence number of a SYN-ACK (to reset it).
	peerSeq uint32
}

// parseReply reads a packet from the network layer on (the receive socket
// is SOCK_DGRAM, so there is no link header whatever the interface). It
// accepts a TCP SYN-ACK or RST, or an ICMP/ICMPv6 destination unreachable
// that quotes a TCP segment; anything else, or anything truncated, is not
// a reply. The caller still checks that the reply matches a probe.
func parseReply(p []byte) (reply, bool) {
	if len(p) < 1 {
		return reply{}, false
	}
	switch p[0] >> 4 {
	case 4:
		src, dst, proto, l4, ok := parseIPv4(p)
		if !ok {
			return reply{}, false
		}
		switch proto {
		case 6:
			return parseTCPReply(src, dst, l4)
		case 1:
			// type 3 destination unreachable; the quoted datagram
			// starts after the 8-byte ICMP header.
			if len(l4) < 8 || l4[0] != 3 {
				return reply{}, false
			}
			isrc, idst, iproto, il4, ok := parseIPv4(l4[8:])
			if !ok || iproto != 6 || isrc != dst {
				return reply{}, false
			}
			return quotedProbe(isrc, idst, il4)
		}
	case 6:
		src, dst, proto, l4, ok := parseIPv6(p)
		if !ok {
			return reply{}, false
		}
		switch proto {
		case 6:
			return parseTCPReply(src, dst, l4)
		case 58:
			if len(l4) < 8 || l4[0] != 1 {
				return reply{}, false
			}
			isrc, idst, iproto, il4, ok := parseIPv6(l4[8:])
			if !ok || iproto != 6 || isrc != dst {
				return reply{}, false
			}
			return quotedProbe(isrc, idst, il4)
		}
	}
	return reply{}, false
}

// parseIPv4 returns the addresses, protocol and payload of an unfragmented
// IPv4 datagram (or the first fragment an ICMP error quotes, whose total
// length may exceed what was quoted).
func parseIPv4(p []byte) (src, dst netip.Addr, proto uint8, payload []byte, ok bool) {
	if len(p) < ip4Len || p[0]>>4 != 4 {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < ip4Len || len(p) < ihl {
		return
	}
	if binary.BigEndian.Uint16(p[6:])&0x1fff != 0 { // not the first fragment
		return
	}
	end := int(binary.BigEndian.Uint16(p[2:]))
	if end < ihl {
		return
	}
	end = min(end, len(p))
	src = netip.AddrFrom4([4]byte(p[12:16]))
	dst = netip.AddrFrom4([4]byte(p[16:20]))
	return src, dst, p[9], p[ihl:end], true
}

// parseIPv6 returns the addresses, next header and payload of an IPv6
// packet without extension headers (a SYN-ACK has none).
func parseIPv6(p []byte) (src, dst netip.Addr, proto uint8, payload []byte, ok bool) {
	if len(p) < ip6Len || p[0]>>4 != 6 {
		return
	}
	end := min(ip6Len+int(binary.BigEndian.Uint16(p[4:])), len(p))
	src = netip.AddrFrom16([16]byte(p[8:24]))
	dst = netip.AddrFrom16([16]byte(p[24:40]))
	return src, dst, p[6], p[ip6Len:end], true
}

func parseTCPReply(src, dst netip.Addr, t []byte) (reply, bool) {
	if len(t) < 20 {
		return reply{}, false
	}
	flags := t[13]
	r := reply{
		target: src, tport: binary.BigEndian.Uint16(t[0:]),
		us: dst, uport: binary.BigEndian.Uint16(t[2:]),
		seq:     binary.BigEndian.Uint32(t[8:]) - 1, // the acknowledgment is our sequence + 1
		peerSeq: binary.BigEndian.Uint32(t[4:]),
	}
	switch {
	case flags&tcpRST != 0 && flags&tcpACK != 0:
		r.kind = replyRst
	case flags&(tcpSYN|tcpACK|tcpRST|tcpFIN) == tcpSYN|tcpACK:
		r.kind = replySynAck
	default:
		return reply{}, false
	}
	if r.tport == 0 || r.uport == 0 {
		return reply{}, false
	}
	return r, true
}

// quotedProbe reads the TCP header an ICMP error quotes: at least its
// first 8 bytes (ports and sequence number), which RFC 792 guarantees.
func quotedProbe(us, target netip.Addr, t []byte) (reply, bool) {
	if len(t) < 8 {
		return reply{}, false
	}
	r := reply{
		kind: replyUnreach, target: target, us: us,
		uport: binary.BigEndian.Uint16(t[0:]), tport: binary.BigEndian.Uint16(t[2:]),
		seq: binary.BigEndian.Uint32(t[4:]),
	}
	if r.tport == 0 || r.uport == 0 {
		return reply{}, false
	}
	return r, true
}
