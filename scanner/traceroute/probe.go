package traceroute

import (
	"encoding/binary"
	"net/netip"
)

// Protocol numbers of the probes.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

// ICMP types and codes the tracer reads.
const (
	icmpEchoReply       = 0
	icmpDestUnreachable = 3
	icmpEcho            = 8
	icmpTimeExceeded    = 11

	codeProtoUnreachable = 2
	codePortUnreachable  = 3
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// flow is what stays the same for every probe of one destination: the
// fields a load balancer may hash.
type flow struct {
	method   string
	src, dst netip.Addr // IPv4
	ident    uint16     // ICMP echo identifier
	sport    uint16     // UDP and TCP source port
	dport    uint16     // UDP and TCP destination port
	seqBase  uint32     // TCP: sequence number of probe 0
}

// payload is the constant part of UDP and ICMP probes.
var payload = []byte("scanfleet traceroute probe")

// build returns the IPv4 packet of probe id with the given TTL.
func (f *flow) build(id uint16, ttl uint8) []byte {
	var l4 []byte
	var proto uint8
	switch f.method {
	case MethodICMP:
		proto = protoICMP
		l4 = make([]byte, 8+2+len(payload))
		l4[0] = icmpEcho
		binary.BigEndian.PutUint16(l4[4:], f.ident)
		binary.BigEndian.PutUint16(l4[6:], id)
		// seq + ^seq is ones' complement zero: the checksum, which
		// some load balancers hash, is the same for every probe.
		binary.BigEndian.PutUint16(l4[8:], ^id)
		copy(l4[10:], payload)
		binary.BigEndian.PutUint16(l4[2:], checksum(l4, 0))
	case MethodUDP:
		proto = protoUDP
		l4 = make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(l4[0:], f.sport)
		binary.BigEndian.PutUint16(l4[2:], f.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], payload)
		c := checksum(l4, pseudoHeader(f.src, f.dst, protoUDP, len(l4)))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:], c)
	case MethodTCP:
		proto = protoTCP
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], f.sport)
		binary.BigEndian.PutUint16(l4[2:], f.dport)
		binary.BigEndian.PutUint32(l4[4:], f.seqBase+uint32(id))
		l4[12] = 5 << 4
		l4[13] = tcpSYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
		binary.BigEndian.PutUint16(l4[16:], checksum(l4, pseudoHeader(f.src, f.dst, protoTCP, len(l4))))
	}
	pkt := make([]byte, 20+len(l4))
	pkt[0] = 4<<4 | 5
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	binary.BigEndian.PutUint16(pkt[4:], id)
	pkt[8] = ttl
	pkt[9] = proto
	s, d := f.src.As4(), f.dst.As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	binary.BigEndian.PutUint16(pkt[10:], checksum(pkt[:20], 0))
	copy(pkt[20:], l4)
	return pkt
}

// pseudoHeader returns the sum of the IPv4 pseudo-header of a TCP or UDP
// checksum.
func pseudoHeader(src, dst netip.Addr, proto uint8, length int) uint32 {
	s, d := src.As4(), dst.As4()
	var sum uint32
	for i := 0; i < 4; i += 2 {
		sum += uint32(s[i])<<8 | uint32(s[i+1])
		sum += uint32(d[i])<<8 | uint32(d[i+1])
	}
	return sum + uint32(proto) + uint32(length)
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// answerKind is what answered a probe.
type answerKind int

const (
	answerTimeExceeded answerKind = iota + 1 // a router on the way
	answerUnreachable                        // an ICMP destination unreachable
	answerEchoReply                          // the destination, to an ICMP probe
	answerSynAck                             // the destination, to a TCP probe: port open
	answerReset                              // the destination, to a TCP probe: port closed
)

// answer is one reply read from the network, matched to the probe it
// answers by the probe's id.
type answer struct {
	kind  answerKind
	from  netip.Addr // who sent it
	code  uint8      // ICMP code, for answerUnreachable
	proto uint8      // protocol of the probe answered
	dst   netip.Addr // the probe's destination
	id    uint16     // the probe's id
	// ident is the ICMP identifier (ICMP probes) or source port (UDP and
	// TCP probes) of the probe answered, to tell our probes from another
	// program's; port is the destination port of a UDP or TCP probe.
	ident, port uint16
	// ack is the acknowledgement number of a TCP answer.
	ack uint32
}

// parseICMP reads an ICMPv4 message (IPv4 header already stripped) sent by
// from. It reports false for anything that cannot answer a probe: other
// types, and truncated or malformed quotes. The message comes from the
// network, so every length is checked.
func parseICMP(b []byte, from netip.Addr) (answer, bool) {
	if len(b) < 8 {
		return answer{}, false
	}
	a := answer{from: from, code: b[1]}
	switch b[0] {
	case icmpEchoReply:
		a.kind = answerEchoReply
		a.proto = protoICMP
		a.dst = from
		a.ident = binary.BigEndian.Uint16(b[4:])
		a.id = binary.BigEndian.Uint16(b[6:])
		return a, true
	case icmpTimeExceeded:
		if b[1] != 0 { // 1 is fragment reassembly time exceeded
			return answer{}, false
		}
		a.kind = answerTimeExceeded
	case icmpDestUnreachable:
		a.kind = answerUnreachable
	default:
		return answer{}, false
	}
	// The quote: the probe's IPv4 header and at least 8 bytes after it.
	q := b[8:]
	if len(q) < 20 || q[0]>>4 != 4 {
		return answer{}, false
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || len(q) < ihl+8 {
		return answer{}, false
	}
	a.id = binary.BigEndian.Uint16(q[4:])
	a.proto = q[9]
	a.dst = netip.AddrFrom4([4]byte(q[16:20]))
	l4 := q[ihl:]
	switch a.proto {
	case protoICMP:
		if l4[0] != icmpEcho {
			return answer{}, false
		}
		a.ident = binary.BigEndian.Uint16(l4[4:])
	case protoUDP, protoTCP:
		a.ident = binary.BigEndian.Uint16(l4[0:])
		a.port = binary.BigEndian.Uint16(l4[2:])
	default:
		return answer{}, false
	}
	return a, true
}

// parseTCP reads a TCP segment (IPv4 header already stripped) sent by from
// and reports a SYN-ACK or a reset: the destination's answer to a TCP
// probe. The probe's id is recovered from the acknowledgement number by the
// caller, which knows the sequence base.
func parseTCP(b []byte, from netip.Addr) (answer, bool) {
	if len(b) < 20 {
		return answer{}, false
	}
	flags := b[13]
	a := answer{from: from, dst: from, proto: protoTCP}
	switch {
	case flags&tcpRST != 0:
		a.kind = answerReset
	case flags&(tcpSYN|tcpACK) == tcpSYN|tcpACK:
		a.kind = answerSynAck
	default:
		return answer{}, false
	}
	if flags&tcpACK == 0 {
		// A reset without ACK answers no SYN of ours.
		return answer{}, false
	}
	// Their source port is the probe's destination port, theirs is ours.
	a.port = binary.BigEndian.Uint16(b[0:])
	a.ident = binary.BigEndian.Uint16(b[2:])
	a.ack = binary.BigEndian.Uint32(b[8:])
	return a, true
}
