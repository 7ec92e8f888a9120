package synscan

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
)

var (
	us4     = netip.MustParseAddr("10.9.0.1")
	them4   = netip.MustParseAddr("10.9.3.7")
	us6     = netip.MustParseAddr("fd00:9::1")
	them6   = netip.MustParseAddr("fd00:9::3:7")
	macA    = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB    = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	testKey = cookieKey{1, 2}
)

// TestTemplateChecksums checks the patched probes against gopacket's own
// serialization of the same packet, checksums included.
func TestTemplateChecksums(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		flags    uint8
	}{
		{"ipv4 syn", us4, them4, tcpSYN},
		{"ipv4 rst", us4, them4, tcpRST},
		{"ipv6 syn", us6, them6, tcpSYN},
		{"ipv6 rst", us6, them6, tcpRST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := newTemplate(tc.src, macA, macB)
			require.NoError(t, err)
			for _, port := range []uint16{1, 80, 443, 65535} {
				for _, seq := range []uint32{0, 1, 0xdeadbeef, 0xffffffff} {
					buf := make([]byte, 100)
					n := tmpl.fill(buf, tc.dst, port, 61000, seq, tc.flags)
					got := buf[:n]
					want := serialize(t, tc.src, tc.dst, 61000, port, seq, tc.flags, got)
					require.Equal(t, want, got, "port %d seq %#x", port, seq)
				}
			}
		})
	}
}

// serialize builds with gopacket the probe fill should have made, taking
// the IP ID from got (it is derived from the cookie).
func serialize(t testing.TB, src, dst netip.Addr, sport, dport uint16, seq uint32, flags uint8, got []byte) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Window: tcpWin,
		SYN: flags&tcpSYN != 0, RST: flags&tcpRST != 0,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}}
	if flags == tcpRST {
		tcp.Window = 0
	}
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB}
	var ip gopacket.SerializableLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: probeTTL, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
			Id: binary.BigEndian.Uint16(got[ethLen+4:])}
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip4))
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: probeTTL, NextHeader: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip6))
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp))
	return buf.Bytes()[:len(got)]
}

// reply builds a packet from the network header on, as the receive socket
// sees it.
func replyPacket(t testing.TB, from, to netip.Addr, sport, dport uint16, seq, ack uint32, syn, ackf, rst bool) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, SYN: syn, ACK: ackf, RST: rst, Window: 65535}
	var ip gopacket.SerializableLayer
	if from.Is4() {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: from.AsSlice(), DstIP: to.AsSlice()}
		_ = tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: from.AsSlice(), DstIP: to.AsSlice()}
		_ = tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp))
	return buf.Bytes()
}

// unreachPacket is an ICMP destination unreachable from a router quoting
// our probe's IP header and first 8 TCP bytes.
func unreachPacket(t testing.TB, v6 bool, probe []byte) []byte {
	router := netip.MustParseAddr("10.9.9.9")
	var layersOut []gopacket.SerializableLayer
	if !v6 {
		quoted := probe[ethLen : ethLen+ip4Len+8]
		layersOut = []gopacket.SerializableLayer{
			&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: router.AsSlice(), DstIP: us4.AsSlice()},
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 13)},
			gopacket.Payload(quoted),
		}
	} else {
		quoted := probe[ethLen : ethLen+ip6Len+8]
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP("fd00:9::9"), DstIP: us6.AsSlice()}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 1)}
		_ = icmp.SetNetworkLayerForChecksum(ip6)
		layersOut = []gopacket.SerializableLayer{ip6, icmp, gopacket.Payload(append(make([]byte, 4), quoted...))}
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, layersOut...))
	return buf.Bytes()
}

func TestParseReply(t *testing.T) {
	t.Parallel()
	tmpl4, err := newTemplate(us4, macA, macB)
	require.NoError(t, err)
	probe4 := make([]byte, 100)
	probe4 = probe4[:tmpl4.fill(probe4, them4, 443, 61007, 0x01020304, tcpSYN)]
	tmpl6, err := newTemplate(us6, macA, macB)
	require.NoError(t, err)
	probe6 := make([]byte, 100)
	probe6 = probe6[:tmpl6.fill(probe6, them6, 443, 61007, 0x01020304, tcpSYN)]
	icmp6 := unreachPacket(t, true, probe6)
	// ICMPv6 has a 4-byte unused field before the quote, which the
	// Payload above added; the parser skips 8 bytes of ICMP header.
	_ = icmp6

	for _, tc := range []struct {
		name string
		pkt  []byte
		ok   bool
		want reply
	}{
		{"ipv4 syn-ack", replyPacket(t, them4, us4, 443, 61007, 99, 0x01020305, true, true, false), true,
			reply{kind: replySynAck, target: them4, tport: 443, us: us4, uport: 61007, seq: 0x01020304, peerSeq: 99}},
		{"ipv4 rst-ack", replyPacket(t, them4, us4, 443, 61007, 0, 0x01020305, false, true, true), true,
			reply{kind: replyRst, target: them4, tport: 443, us: us4, uport: 61007, seq: 0x01020304}},
		{"ipv6 syn-ack", replyPacket(t, them6, us6, 443, 61007, 99, 0x01020305, true, true, false), true,
			reply{kind: replySynAck, target: them6, tport: 443, us: us6, uport: 61007, seq: 0x01020304, peerSeq: 99}},
		{"ipv6 rst-ack", replyPacket(t, them6, us6, 443, 61007, 0, 0x01020305, false, true, true), true,
			reply{kind: replyRst, target: them6, tport: 443, us: us6, uport: 61007, seq: 0x01020304}},
		{"ipv4 unreachable", unreachPacket(t, false, probe4), true,
			reply{kind: replyUnreach, target: them4, tport: 443, us: us4, uport: 61007, seq: 0x01020304}},
		{"ipv6 unreachable", icmp6, true,
			reply{kind: replyUnreach, target: them6, tport: 443, us: us6, uport: 61007, seq: 0x01020304}},
		{"our own syn", probe4[ethLen:], false, reply{}},
		{"bare ack", replyPacket(t, them4, us4, 443, 61007, 0, 1, false, true, false), false, reply{}},
		{"rst without ack", replyPacket(t, them4, us4, 443, 61007, 0, 1, false, false, true), false, reply{}},
		{"truncated tcp", replyPacket(t, them4, us4, 443, 61007, 99, 1, true, true, false)[:30], false, reply{}},
		{"empty", nil, false, reply{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := parseReply(tc.pkt)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestReplyFilter(t *testing.T) {
	t.Parallel()
	prog, err := replyFilter(61000, 61255)
	require.NoError(t, err)
	// x/net/bpf's VM has no packet type extension: run the program
	// without its first two instructions (the outgoing check).
	var insns []bpf.Instruction
	for _, raw := range prog[2:] {
		insns = append(insns, raw.Disassemble())
	}
	vm, err := bpf.NewVM(insns)
	require.NoError(t, err)
	tmpl, err := newTemplate(us4, macA, macB)
	require.NoError(t, err)
	probe := make([]byte, 100)
	probe = probe[:tmpl.fill(probe, them4, 443, 61007, 7, tcpSYN)]
	for _, tc := range []struct {
		name string
		pkt  []byte
		keep bool
	}{
		{"ipv4 syn-ack", replyPacket(t, them4, us4, 443, 61007, 1, 8, true, true, false), true},
		{"ipv4 rst", replyPacket(t, them4, us4, 443, 61000, 0, 8, false, true, true), true},
		{"ipv4 rst, last port", replyPacket(t, them4, us4, 443, 61255, 0, 8, false, true, true), true},
		{"ipv6 syn-ack", replyPacket(t, them6, us6, 443, 61007, 1, 8, true, true, false), true},
		{"ipv4 unreachable", unreachPacket(t, false, probe), true},
		{"port below the range", replyPacket(t, them4, us4, 443, 60999, 1, 8, true, true, false), false},
		{"port above the range", replyPacket(t, them4, us4, 443, 61256, 1, 8, true, true, false), false},
		{"a syn", probe[ethLen:], false},
		{"ipv6 ack", replyPacket(t, them6, us6, 443, 61007, 1, 8, false, true, false), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := vm.Run(tc.pkt)
			require.NoError(t, err)
			require.Equal(t, tc.keep, n > 0, "kept %d bytes", n)
		})
	}
}

func TestPermutationIsABijection(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{1, 2, 3, 7, 64, 65535, 65536, 100_003, 1 << 20} {
		p := newPermutation(n, [4]uint64{n, 2, 3, 4})
		seen := make([]bool, n)
		inOrder := 0
		for i := range n {
			x := p.At(i)
			require.Less(t, x, n)
			require.False(t, seen[x], "n=%d: %d twice", n, x)
			seen[x] = true
			if x == i {
				inOrder++
			}
		}
		if n >= 1000 {
			require.Less(t, inOrder, int(n/100), "n=%d: the walk barely moves", n)
		}
	}
}

func TestCookieDependsOnTheTuple(t *testing.T) {
	t.Parallel()
	k := cookieKey{3, 4}
	seen := map[uint64]bool{}
	for _, a := range []netip.Addr{them4, them6, us4} {
		for _, p := range []uint16{1, 80, 443} {
			c := k.cookie(a, p)
			require.False(t, seen[c])
			seen[c] = true
		}
	}
	require.NotEqual(t, k.cookie(them4, 80), cookieKey{3, 5}.cookie(them4, 80))
	// SipHash-2-4: the reference vector for the empty message under key
	// 00..0f checks the generic version below, which checks ours.
	key := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	k0, k1 := binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	require.Equal(t, uint64(0x726fdb47dd0e0e31), sipHashRef(k0, k1, nil))
	msg := make([]byte, 24)
	for i := range msg {
		msg[i] = byte(i)
	}
	require.Equal(t, sipHashRef(k0, k1, msg), sipHash24(k0, k1,
		binary.LittleEndian.Uint64(msg[0:]), binary.LittleEndian.Uint64(msg[8:]), binary.LittleEndian.Uint64(msg[16:])))
}

// sipHashRef is SipHash-2-4 of any message, written from the paper.
func sipHashRef(k0, k1 uint64, msg []byte) uint64 {
	v := [4]uint64{k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573}
	rotl := func(x uint64, b uint) uint64 { return x<<b | x>>(64-b) }
	round := func() {
		v[0] += v[1]
		v[1] = rotl(v[1], 13) ^ v[0]
		v[0] = rotl(v[0], 32)
		v[2] += v[3]
		v[3] = rotl(v[3], 16) ^ v[2]
		v[0] += v[3]
		v[3] = rotl(v[3], 21) ^ v[0]
		v[2] += v[1]
		v[1] = rotl(v[1], 17) ^ v[2]
		v[2] = rotl(v[2], 32)
	}
	last := make([]byte, 8)
	n := len(msg) / 8 * 8
	copy(last, msg[n:])
	last[7] = byte(len(msg))
	blocks := append(append([]byte(nil), msg[:n]...), last...)
	for i := 0; i < len(blocks); i += 8 {
		m := binary.LittleEndian.Uint64(blocks[i:])
		v[3] ^= m
		round()
		round()
		v[0] ^= m
	}
	v[2] ^= 0xff
	round()
	round()
	round()
	round()
	return v[0] ^ v[1] ^ v[2] ^ v[3]
}

// BenchmarkProbe compares patching a template with serializing every
// probe with gopacket.
func BenchmarkProbe(b *testing.B) {
	tmpl, err := newTemplate(us4, macA, macB)
	require.NoError(b, err)
	buf := make([]byte, 100)
	b.Run("template", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			h := testKey.cookie(them4, uint16(i))
			tmpl.fill(buf, them4, uint16(i), 61000+uint16(h>>32)%SourcePorts, uint32(h), tcpSYN)
		}
	})
	b.Run("gopacket", func(b *testing.B) {
		sb := gopacket.NewSerializeBuffer()
		opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
		for i := 0; b.Loop(); i++ {
			h := testKey.cookie(them4, uint16(i))
			eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: us4.AsSlice(), DstIP: them4.AsSlice()}
			tcp := &layers.TCP{SrcPort: layers.TCPPort(61000 + uint16(h>>32)%SourcePorts), DstPort: layers.TCPPort(i), Seq: uint32(h), SYN: true, Window: tcpWin,
				Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}}
			_ = tcp.SetNetworkLayerForChecksum(ip)
			_ = gopacket.SerializeLayers(sb, opts, eth, ip, tcp)
		}
	})
}

func BenchmarkHandleReply(b *testing.B) {
	pkt := replyPacket(b, them4, us4, 443, 61007, 99, 0x01020305, true, true, false)
	b.ResetTimer()
	for b.Loop() {
		_, _ = parseReply(pkt)
	}
}
