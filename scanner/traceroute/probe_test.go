package traceroute

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	testSrc = netip.MustParseAddr("192.0.2.1")
	testDst = netip.MustParseAddr("198.51.100.7")
	testHop = netip.MustParseAddr("203.0.113.9")

	testTime = time.Unix(1700000000, 0)
)

func testFlow(method string) *flow {
	return &flow{method: method, src: testSrc, dst: testDst, ident: 0x4242, sport: 40000, dport: 33434, seqBase: 0xfffffff0}
}

func TestProbeChecksumsAndConstantFlow(t *testing.T) {
	t.Parallel()
	for _, method := range []string{MethodICMP, MethodUDP, MethodTCP} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			f := testFlow(method)
			var flowBytes []byte
			for _, id := range []uint16{1, 2, 0x8000, 0xffff} {
				pkt := f.build(id, 7)
				require.Equal(t, uint16(0), checksum(pkt[:20], 0), "IPv4 header checksum")
				require.Equal(t, id, binary.BigEndian.Uint16(pkt[4:]), "IPv4 id")
				require.Equal(t, uint8(7), pkt[8], "TTL")
				l4 := pkt[20:]
				var proto uint8
				switch method {
				case MethodICMP:
					proto = protoICMP
					require.Equal(t, uint16(0), checksum(l4, 0), "ICMP checksum")
					require.Equal(t, id, binary.BigEndian.Uint16(l4[6:]), "echo sequence")
				case MethodUDP:
					proto = protoUDP
					require.Equal(t, uint16(0), checksum(l4, pseudoHeader(testSrc, testDst, protoUDP, len(l4))), "UDP checksum")
				case MethodTCP:
					proto = protoTCP
					require.Equal(t, uint16(0), checksum(l4, pseudoHeader(testSrc, testDst, protoTCP, len(l4))), "TCP checksum")
					require.Equal(t, f.seqBase+uint32(id), binary.BigEndian.Uint32(l4[4:]), "sequence number")
				}
				require.Equal(t, proto, pkt[9])
				// The first four bytes after the IP header (ports, or ICMP
				// type, code and checksum) are what load balancers hash:
				// the same for every probe.
				if flowBytes == nil {
					flowBytes = append([]byte(nil), l4[:4]...)
				}
				require.Equal(t, flowBytes, l4[:4], "flow bytes of probe %d", id)
			}
		})
	}
}

// icmpError wraps the start of pkt in an ICMP error as a router sends it.
func icmpError(typ, code uint8, pkt []byte, quote int) []byte {
	m := make([]byte, 8, 8+quote)
	m[0], m[1] = typ, code
	m = append(m, pkt[:min(quote, len(pkt))]...)
	binary.BigEndian.PutUint16(m[2:], checksum(m, 0))
	return m
}

func TestParseQuotedProbes(t *testing.T) {
	t.Parallel()
	for _, method := range []string{MethodICMP, MethodUDP, MethodTCP} {
		f := testFlow(method)
		pkt := f.build(0x1234, 3)
		for _, tc := range []struct {
			typ, code uint8
			quote     int
			kind      answerKind
		}{
			{icmpTimeExceeded, 0, 28, answerTimeExceeded},
			{icmpTimeExceeded, 0, len(pkt), answerTimeExceeded},
			{icmpDestUnreachable, codePortUnreachable, 28, answerUnreachable},
		} {
			a, ok := parseICMP(icmpError(tc.typ, tc.code, pkt, tc.quote), testHop)
			require.True(t, ok, "%s type %d", method, tc.typ)
			require.Equal(t, tc.kind, a.kind)
			require.Equal(t, testHop, a.from)
			require.Equal(t, testDst, a.dst)
			require.Equal(t, uint16(0x1234), a.id)
			require.Equal(t, tc.code, a.code)
			if method == MethodICMP {
				require.Equal(t, f.ident, a.ident)
			} else {
				require.Equal(t, f.sport, a.ident)
				require.Equal(t, f.dport, a.port)
			}
		}
		// A quote cut inside the transport header answers nothing.
		_, ok := parseICMP(icmpError(icmpTimeExceeded, 0, pkt, 27), testHop)
		require.False(t, ok)
	}
	// Fragment reassembly time exceeded is not a TTL answer.
	_, ok := parseICMP(icmpError(icmpTimeExceeded, 1, testFlow(MethodUDP).build(1, 1), 28), testHop)
	require.False(t, ok)
}

func TestParseEchoReply(t *testing.T) {
	t.Parallel()
	pkt := testFlow(MethodICMP).build(77, 9)
	reply := append([]byte(nil), pkt[20:]...)
	reply[0] = icmpEchoReply
	a, ok := parseICMP(reply, testDst)
	require.True(t, ok)
	require.Equal(t, answerEchoReply, a.kind)
	require.Equal(t, uint16(77), a.id)
	require.Equal(t, uint16(0x4242), a.ident)
	require.Equal(t, testDst, a.dst)
}

func TestParseTCP(t *testing.T) {
	t.Parallel()
	seg := func(flags uint8, ack uint32) []byte {
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], 33434)
		binary.BigEndian.PutUint16(b[2:], 40000)
		binary.BigEndian.PutUint32(b[8:], ack)
		b[12] = 5 << 4
		b[13] = flags
		return b
	}
	for _, tc := range []struct {
		flags uint8
		kind  answerKind
		ok    bool
	}{
		{tcpSYN | tcpACK, answerSynAck, true},
		{tcpRST | tcpACK, answerReset, true},
		{tcpRST, 0, false},
		{tcpSYN, 0, false},
		{tcpACK, 0, false},
		{tcpFIN | tcpACK, 0, false},
	} {
		a, ok := parseTCP(seg(tc.flags, 99), testDst)
		require.Equal(t, tc.ok, ok, "flags %#x", tc.flags)
		if ok {
			require.Equal(t, tc.kind, a.kind)
			require.Equal(t, uint32(99), a.ack)
			require.Equal(t, uint16(33434), a.port)
			require.Equal(t, uint16(40000), a.ident)
		}
	}
	_, ok := parseTCP(seg(tcpSYN|tcpACK, 1)[:19], testDst)
	require.False(t, ok)
}

func TestDeliverMatchesOnlyOwnProbes(t *testing.T) {
	t.Parallel()
	tr := &tracer{probes: map[uint16]*probe{}, seqBase: 0xfffffff0}
	for _, method := range []string{MethodICMP, MethodUDP, MethodTCP} {
		f := testFlow(method)
		f.seqBase = tr.seqBase
		tc := &trace{flow: *f, answers: make(chan result, 4)}
		id, ok := tr.register(&probe{tr: tc, ttl: 3})
		require.True(t, ok)
		pkt := f.build(id, 3)
		good, ok := parseICMP(icmpError(icmpTimeExceeded, 0, pkt, 28), testHop)
		require.True(t, ok)

		other := good
		other.dst = testHop // a probe to another destination
		tr.deliver(other, testTime)
		foreign := good
		foreign.ident++ // another program's probe
		tr.deliver(foreign, testTime)
		require.Empty(t, tc.answers, method)

		tr.deliver(good, testTime)
		tr.deliver(good, testTime) // answered once only
		require.Len(t, tc.answers, 1, method)
		r := <-tc.answers
		require.Equal(t, 3, r.ttl)
		tr.unregister([]uint16{id})
		tr.deliver(good, testTime)
		require.Empty(t, tc.answers, "late answers to a finished round are dropped")
	}
}

func FuzzParseICMP(f *testing.F) {
	for _, method := range []string{MethodICMP, MethodUDP, MethodTCP} {
		pkt := testFlow(method).build(5, 2)
		f.Add(icmpError(icmpTimeExceeded, 0, pkt, 28))
		f.Add(icmpError(icmpDestUnreachable, codePortUnreachable, pkt, len(pkt)))
	}
	f.Add([]byte{icmpEchoReply, 0, 0, 0, 0x42, 0x42, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := parseICMP(b, testHop)
		if !ok {
			return
		}
		if a.kind < answerTimeExceeded || a.kind > answerUnreachable && a.kind != answerEchoReply {
			t.Fatalf("kind %d from an ICMP message", a.kind)
		}
		if !a.dst.Is4() {
			t.Fatalf("destination %v is not IPv4", a.dst)
		}
		if a.kind != answerEchoReply && a.proto != protoICMP && a.proto != protoUDP && a.proto != protoTCP {
			t.Fatalf("quoted protocol %d accepted", a.proto)
		}
	})
}

func FuzzParseTCP(f *testing.F) {
	b := make([]byte, 20)
	b[13] = tcpSYN | tcpACK
	f.Add(b)
	f.Add(b[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := parseTCP(b, testDst)
		if ok && a.kind != answerSynAck && a.kind != answerReset {
			t.Fatalf("kind %d from a TCP segment", a.kind)
		}
		if ok && len(b) < 20 {
			t.Fatalf("accepted a %d-byte segment", len(b))
		}
	})
}
