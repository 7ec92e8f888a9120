package synscan

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Probe layout. A probe is built once per path with gopacket (Ethernet,
// IPv4 or IPv6, TCP SYN with an MSS option, as nmap sends) and then copied
// and patched per target: destination address and port, source port,
// sequence number, IP ID and the checksums. Patching a template costs a
// few tens of nanoseconds; serializing with gopacket per probe costs
// about twenty times that (BenchmarkProbe), which matters at a million
// probes a second.
const (
	ethLen   = 14
	ip4Len   = 20
	ip6Len   = 40
	tcpLen   = 24 // 20 + MSS option
	tcpWin   = 1024
	probeTTL = 64
)

// template is a pre-built probe for one address family and path.
type template struct {
	frame  []byte // Ethernet header included
	ipOff  int    // offset of the IP header in frame (14)
	tcpOff int
	v6     bool
	// sum0 is the one's-complement sum of the TCP pseudo-header and TCP
	// header fields that do not change between probes (source address,
	// protocol, length, flags, window, options).
	sum0 uint32
}

// newTemplate builds the probe template for probes from src (with source
// MAC srcMAC) to the next hop dstMAC. A nil MAC is all zeros (loopback).
func newTemplate(src netip.Addr, srcMAC, dstMAC net.HardwareAddr) (*template, error) {
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	if len(srcMAC) != 6 {
		srcMAC = zero
	}
	if len(dstMAC) != 6 {
		dstMAC = zero
	}
	tcp := &layers.TCP{
		SrcPort: 1, DstPort: 1, SYN: true, Window: tcpWin,
		Options: []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}},
	}
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC}
	var ip gopacket.SerializableLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: probeTTL, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: net.IPv4zero.To4()}
		if err := tcp.SetNetworkLayerForChecksum(ip4); err != nil {
			return nil, err
		}
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: probeTTL, NextHeader: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: net.IPv6zero}
		if err := tcp.SetNetworkLayerForChecksum(ip6); err != nil {
			return nil, err
		}
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		return nil, fmt.Errorf("build probe template: %w", err)
	}
	t := &template{frame: append([]byte(nil), buf.Bytes()...), ipOff: ethLen, v6: src.Is6()}
	if t.v6 {
		t.tcpOff = ethLen + ip6Len
	} else {
		t.tcpOff = ethLen + ip4Len
	}
	// gopacket pads the frame to Ethernet's 60-byte minimum; the NIC
	// does that, and a raw IP socket must not send the padding.
	if len(t.frame) >= t.tcpOff+tcpLen {
		t.frame = t.frame[:t.tcpOff+tcpLen]
	} else {
		return nil, fmt.Errorf("build probe template: %d bytes, want %d", len(t.frame), t.tcpOff+tcpLen)
	}
	// Constant part of the TCP checksum: source address, protocol and
	// length from the pseudo-header; data offset, flags, window, urgent
	// pointer and options from the header.
	var s uint32
	if t.v6 {
		s = sumBytes(0, t.frame[t.ipOff+8:t.ipOff+24])
	} else {
		s = sumBytes(0, t.frame[t.ipOff+12:t.ipOff+16])
	}
	s += 6 + tcpLen
	tc := t.frame[t.tcpOff:]
	s = sumBytes(s, tc[12:14])
	s = sumBytes(s, tc[14:16])
	s = sumBytes(s, tc[18:tcpLen])
	t.sum0 = s
	return t, nil
}

// fill writes the probe to dst (len(t.frame) bytes) and returns its length.
func (t *template) fill(dst []byte, addr netip.Addr, dport, sport uint16, seq uint32, flags uint8) int {
	n := copy(dst, t.frame)
	ip := dst[t.ipOff:]
	tcp := dst[t.tcpOff:]
	var s uint32
	if t.v6 {
		a := addr.As16()
		copy(ip[24:40], a[:])
		s = sumBytes(t.sum0, a[:])
	} else {
		a := addr.As4()
		copy(ip[16:20], a[:])
		binary.BigEndian.PutUint16(ip[4:], uint16(seq>>16)^uint16(seq)) // IP ID
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^fold(sumBytes(0, ip[:ip4Len])))
		s = sumBytes(t.sum0, a[:])
	}
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	if flags != tcpSYN {
		// A reset answers a SYN-ACK: sequence seq+1 (what the target
		// acknowledged), no acknowledgment. The flags word is part of
		// the precomputed sum, so add the difference.
		tcp[13] = flags
		s += uint32(flags) + 0xffff - uint32(tcpSYN)
		binary.BigEndian.PutUint16(tcp[14:], 0) // window
		s += 0xffff - tcpWin
	}
	s += uint32(sport) + uint32(dport) + seq>>16 + seq&0xffff
	binary.BigEndian.PutUint16(tcp[16:], ^fold(s))
	return n
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func sumBytes(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
