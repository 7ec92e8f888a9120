package capture

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	require.NoError(t, gopacket.SerializeLayers(buf, opts, ls...))
	return buf.Bytes()
}

func eth(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: typ}
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ip6(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// testPackets are Ethernet frames, by name.
func testPackets(t testing.TB) map[string][]byte {
	payload := gopacket.Payload("hello")
	withNet := func(tl interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}, n gopacket.NetworkLayer) {
		require.NoError(t, tl.SetNetworkLayerForChecksum(n))
	}
	pk := map[string][]byte{}

	i := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 1234, DstPort: 80, SYN: true, Window: 1024}
	withNet(tcp, i)
	pk["tcp4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, tcp, payload)

	i = ip4("10.0.0.3", "10.0.1.4", layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 53, DstPort: 5353}
	withNet(udp, i)
	pk["udp4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, udp, payload)

	i = ip4("10.0.0.1", "192.168.1.1", layers.IPProtocolICMPv4)
	pk["icmp4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, payload)

	// An IPv4 header with options: the ports sit after 24 bytes.
	i = ip4("172.16.5.5", "10.0.0.2", layers.IPProtocolTCP)
	i.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	tcp = &layers.TCP{SrcPort: 2222, DstPort: 8080, ACK: true, Window: 1024}
	withNet(tcp, i)
	pk["tcp4opts"] = serialize(t, eth(layers.EthernetTypeIPv4), i, tcp, payload)

	// A later fragment of a UDP datagram whose bytes look like port 80.
	i = ip4("10.0.0.9", "10.0.0.2", layers.IPProtocolUDP)
	i.FragOffset = 100
	pk["frag4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, gopacket.Payload{0, 80, 0, 80, 0, 8, 0, 0})

	i6 := ip6("2001:db8::1", "2001:db8:1::2", layers.IPProtocolTCP)
	tcp = &layers.TCP{SrcPort: 4000, DstPort: 443, SYN: true, Window: 1024}
	withNet(tcp, i6)
	pk["tcp6"] = serialize(t, eth(layers.EthernetTypeIPv6), i6, tcp, payload)

	i6 = ip6("fe80::1", "2001:db8::1", layers.IPProtocolUDP)
	udp = &layers.UDP{SrcPort: 5000, DstPort: 80}
	withNet(udp, i6)
	pk["udp6"] = serialize(t, eth(layers.EthernetTypeIPv6), i6, udp, payload)

	i6 = ip6("2001:db8::1", "ff02::1", layers.IPProtocolICMPv6)
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
	withNet(icmp6, i6)
	pk["icmp6"] = serialize(t, eth(layers.EthernetTypeIPv6), i6, icmp6, payload)

	pk["arp"] = serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: 1, SourceHwAddress: macA, SourceProtAddress: []byte{10, 0, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2},
	})
	return pk
}

// accepted runs prog on every packet and returns the names it keeps.
func accepted(t testing.TB, prog []bpf.RawInstruction, packets map[string][]byte, link linkType) []string {
	t.Helper()
	insns, ok := bpf.Disassemble(prog)
	require.True(t, ok, "program disassembles")
	vm, err := bpf.NewVM(insns)
	require.NoError(t, err)
	var out []string
	for name, p := range packets {
		if link == linkRawIP {
			if name == "arp" {
				continue
			}
			p = p[14:]
		}
		n, err := vm.Run(p)
		require.NoError(t, err, name)
		if n > 0 {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func TestFilterSelectsPackets(t *testing.T) {
	t.Parallel()
	packets := testPackets(t)
	all := []string{"arp", "frag4", "icmp4", "icmp6", "tcp4", "tcp4opts", "tcp6", "udp4", "udp6"}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"", all},
		{"ip", []string{"frag4", "icmp4", "tcp4", "tcp4opts", "udp4"}},
		{"ip6", []string{"icmp6", "tcp6", "udp6"}},
		{"arp", []string{"arp"}},
		{"not arp", []string{"frag4", "icmp4", "icmp6", "tcp4", "tcp4opts", "tcp6", "udp4", "udp6"}},
		{"tcp", []string{"tcp4", "tcp4opts", "tcp6"}},
		{"udp", []string{"frag4", "udp4", "udp6"}},
		{"icmp", []string{"icmp4"}},
		{"icmp6", []string{"icmp6"}},
		{"host 10.0.0.2", []string{"frag4", "tcp4", "tcp4opts"}},
		{"src host 10.0.0.1", []string{"icmp4", "tcp4"}},
		{"dst host 10.0.0.1", nil},
		{"host 2001:db8::1", []string{"icmp6", "tcp6", "udp6"}},
		{"dst host 2001:db8::1", []string{"udp6"}},
		{"net 10.0.0.0/24", []string{"frag4", "icmp4", "tcp4", "tcp4opts", "udp4"}},
		{"dst net 10.0.1.0/24", []string{"udp4"}},
		{"net 172.16.0.0/12", []string{"tcp4opts"}},
		{"net 2001:db8::/32", []string{"icmp6", "tcp6", "udp6"}},
		{"src net 2001:db8:1::/48", nil},
		{"dst net 2001:db8:1::/48", []string{"tcp6"}},
		{"net 10.0.0.2", []string{"frag4", "tcp4", "tcp4opts"}},
		{"port 80", []string{"tcp4", "udp6"}},
		{"tcp port 80", []string{"tcp4"}},
		{"udp port 80", []string{"udp6"}},
		{"dst port 8080", []string{"tcp4opts"}},
		{"src port 8080", nil},
		{"tcp src port 2222", []string{"tcp4opts"}},
		{"port 53 or port 443", []string{"tcp6", "udp4"}},
		{"portrange 50-100", []string{"tcp4", "udp4", "udp6"}},
		{"udp dst portrange 5000-6000", []string{"udp4"}},
		{"portrange 8080-8080", []string{"tcp4opts"}},
		{"tcp and not port 80", []string{"tcp4opts", "tcp6"}},
		{"!(tcp || udp) && ip", []string{"icmp4"}},
		{"host 10.0.0.1 and (port 80 or icmp)", []string{"icmp4", "tcp4"}},
		// tcpdump's precedence: and and or bind equally, left to right.
		{"arp or tcp and port 80", []string{"tcp4"}},
		{"tcp and port 80 or arp", []string{"arp", "tcp4"}},
		{"TCP AND PORT 443", []string{"tcp6"}},
	} {
		requireKeeps(t, tc.filter, packets, func(link linkType) []string {
			want := tc.want
			if link == linkRawIP {
				want = slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "arp" })
			}
			return want
		})
	}
}

// requireKeeps compiles filter for Ethernet and for raw IP and checks
// that each program keeps exactly the packets want names for its link.
func requireKeeps(t *testing.T, filter string, packets map[string][]byte, want func(linkType) []string) {
	t.Helper()
	n, err := parseFilter(filter)
	require.NoError(t, err, filter)
	for _, link := range []linkType{linkEthernet, linkRawIP} {
		prog, err := compileFilter(n, link, 65535)
		require.NoError(t, err, filter)
		w := want(link)
		got := accepted(t, prog, packets, link)
		if len(w) == 0 {
			require.Empty(t, got, "filter %q, link %d", filter, link)
		} else {
			require.Equal(t, w, got, "filter %q, link %d", filter, link)
		}
	}
}

func TestFilterReturnsSnaplen(t *testing.T) {
	t.Parallel()
	prog, err := compileFilter(nil, linkEthernet, 40)
	require.NoError(t, err)
	insns, _ := bpf.Disassemble(prog)
	vm, err := bpf.NewVM(insns)
	require.NoError(t, err)
	n, err := vm.Run(testPackets(t)["tcp4"])
	require.NoError(t, err)
	require.Equal(t, 40, n)
}

func TestScopeFilter(t *testing.T) {
	t.Parallel()
	packets := testPackets(t)
	for _, tc := range []struct {
		scope []string
		want  []string
	}{
		{[]string{"10.0.0.2/32"}, []string{"frag4", "tcp4", "tcp4opts"}},
		{[]string{"10.0.1.0/24", "192.168.0.0/16"}, []string{"icmp4", "udp4"}},
		{[]string{"2001:db8:1::/48"}, []string{"tcp6"}},
		{[]string{"0.0.0.0/0"}, []string{"frag4", "icmp4", "tcp4", "tcp4opts", "udp4"}},
		{[]string{"172.16.5.5/32", "fe80::/10"}, []string{"tcp4opts", "udp6"}},
	} {
		var pfs []netip.Prefix
		for _, s := range tc.scope {
			pfs = append(pfs, netip.MustParsePrefix(s))
		}
		prog, err := compileFilter(scopeNode{pfs}, linkEthernet, 65535)
		require.NoError(t, err)
		require.Equal(t, tc.want, accepted(t, prog, packets, linkEthernet), "scope %v", tc.scope)
	}
}

func TestLongScopeUsesLongJumps(t *testing.T) {
	t.Parallel()
	packets := testPackets(t)
	// 600 single addresses, then the one that matters: every conditional
	// jump out of the first ones is far beyond 255 instructions.
	var pfs []netip.Prefix
	for i := range 600 {
		pfs = append(pfs, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), 32))
	}
	pfs = append(pfs, netip.MustParsePrefix("192.168.1.1/32"), netip.MustParsePrefix("2001:db8:1::/48"))
	n := andNode{scopeNode{pfs}, orNode{protoNode{"icmp"}, protoNode{"tcp"}}}
	prog, err := compileFilter(n, linkEthernet, 65535)
	require.NoError(t, err)
	require.Greater(t, len(prog), 2400)
	require.Equal(t, []string{"icmp4", "tcp6"}, accepted(t, prog, packets, linkEthernet))

	for i := range 1500 {
		pfs = append(pfs, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), 32))
	}
	_, err = compileFilter(scopeNode{pfs}, linkEthernet, 65535)
	require.ErrorContains(t, err, "more than the kernel's 4096")
}

func TestParseFilterErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ filter, want string }{
		{"host", "host at offset 0 needs an address"},
		{"host example.com", `"example.com" at offset 5 is not an IP address`},
		{"host 10.0.0.1 or 10.0.0.2", `"10.0.0.2" at offset 17 is not a filter primitive`},
		{"port 70000", "not a port"},
		{"port 80-90", "portrange a range"},
		{"portrange 90-80", "not a port or port range"},
		{"tcp[13] / 0 = 1", `division by zero: "/" at offset 8 divides by 0`},
		{"len % (2 - 2) = 0", `modulo by zero: "%" at offset 4`},
		{"len << 32 = 0", `"<<" at offset 4 shifts by 32, more than 31 bits`},
		{"tcp[13:3] = 0", `size "3" at offset 7: a load is 1, 2 or 4 bytes`},
		{"tcp[13 = 0", "missing ] for the [ at offset 3"},
		{"(len + 1 > 0", "missing ) for the ( at offset 0"},
		{"arp[0] = 1", `"arp[" at offset 0: byte access is supported for ether, link, ip, ip6`},
		{"tcp[70000] = 0", "tcp[70000] at offset 0: offset 70000 is beyond any packet"},
		{"tcp[0 - 1] = 0", "offset 4294967295 is beyond any packet"},
		{"tcp[13] & 2", "the expression at offset 0 needs a comparison"},
		{"tcp and tcp[13] & 2 or udp", `unexpected "or" at offset 20: the expression at offset 8 needs a comparison`},
		{"len > 0x1ffffffff", `"0x1ffffffff" at offset 6 does not fit in 32 bits`},
		{"len > 09", `"09" at offset 6 is not a number`},
		{"len > tcp-syns", `"tcp-syns" at offset 6 is not a number, a name such as tcp-syn`},
		{"len > (tcp)", `"tcp" at offset 7 is not a number`},
		{"1 < 2 < 3", `unexpected "<" at offset 6`},
		{"len >", "ends too early"},
		{"greater", "greater at offset 0 needs a length"},
		{"less 0x", `"0x" at offset 5: less takes a length in bytes`},
		{"tcp = 1", `unexpected "=" at offset 4`},
		{"len = " + strings.Repeat("-", 200) + "1", "nests deeper than 100"},
		{"len = " + strings.Repeat("(", 200) + "1" + strings.Repeat(")", 200), "nests deeper than 100"},
		{"len = " + strings.Repeat("tcp[", 200) + "1" + strings.Repeat("]", 200), "nests deeper than 100"},
		{"(tcp", "missing ) for the ( at offset 0"},
		{"tcp)", `unexpected ")" at offset 3`},
		{"tcp and", "ends too early"},
		{"and tcp", `unexpected "and" at offset 0`},
		{"tcp & udp", "use &&"},
		{"src tcp", `expected host, net, port or portrange`},
		{"udp host 10.0.0.1", "udp cannot qualify host"},
		{"net 10.0.0.0/33", "not a prefix"},
		{"net ::ffff:10.0.0.0/104", "IPv4-mapped"},
		{"src or dst host 10.0.0.1", "leave out the direction"},
		{strings.Repeat("(", 200) + "tcp" + strings.Repeat(")", 200), "nests deeper than 100"},
		{strings.Repeat("not ", 200) + "tcp", "nests deeper than 100"},
		{strings.Repeat("tcp or ", 2000) + "tcp", "longer than 8192"},
		{"gateway 10.0.0.1", `"gateway" at offset 0 is not a filter primitive`},
	} {
		_, err := parseFilter(tc.filter)
		require.Error(t, err, tc.filter)
		require.Contains(t, err.Error(), tc.want, tc.filter)
	}
}

func TestParseFilterCanonical(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"tcp port 80":                                   "tcp port 80",
		"  !  ( HOST 10.0.0.1 )":                        "not host 10.0.0.1",
		"arp or tcp and udp dst port 1":                 "((arp or tcp) and udp dst port 1)",
		"host ::ffff:10.1.2.3":                          "host 10.1.2.3",
		"net 10.1.2.3/8":                                "net 10.0.0.0/8",
		"portrange 1-2 && !icmp6 || ip6":                "((portrange 1-2 and not icmp6) or ip6)",
		"src net 2001:db8::1 and dst host ::1":          "(src net 2001:db8::1/128 and dst host ::1)",
		"sctp and sctp src portrange 0-65535":           "(sctp and sctp src portrange 0-65535)",
		"not not (tcp)":                                 "not not tcp",
		"udp\tport\n53":                                 "udp port 53",
		"((((tcp))))":                                   "tcp",
		"host 10.0.0.1 and not host 10.0.0.2 or ip":     "((host 10.0.0.1 and not host 10.0.0.2) or ip)",
		"tcp[tcpflags] & tcp-syn != 0":                  "(tcp[tcpflags] & tcp-syn) != 0",
		"tcp[13]&2!=0":                                  "(tcp[13] & 2) != 0",
		"ip[6:2] & 0x1fff != 0":                         "(ip[6:2] & 0x1fff) != 0",
		"tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn":  "(tcp[tcpflags] & (tcp-syn | tcp-ack)) = tcp-syn",
		"greater 1000 and less 0x5dc":                   "(len >= 1000 and len <= 0x5dc)",
		"len-14 > 0":                                    "(len - 14) > 0",
		"length/2 >= 010":                               "(len / 2) >= 010",
		"tcp[0]-1 > tcp[0:2]-tcp-syn-1":                 "(tcp[0] - 1) > ((tcp[0:2] - tcp-syn) - 1)",
		"tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420": "tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420",
		"1 + 2 * 3 = 7 or len | 1 & 2 ^ 3 = 0":          "((1 + (2 * 3)) = 7 or (len | ((1 & 2) ^ 3)) = 0)",
		"len << 1 + 1 == 240":                           "(len << (1 + 1)) = 240",
		"-len == --1 && !(udp[8:4] < 1)":                "(-len = --1 and not udp[8:4] < 1)",
		"((len)) > 1":                                   "len > 1",
		"(tcp[0] = 1)":                                  "tcp[0] = 1",
		"(tcp[0]) * 2 > 1 or (ip)":                      "((tcp[0] * 2) > 1 or ip)",
		"LEN >= 0X10 and ETHER[0] = LINK[0]":            "(len >= 0x10 and ether[0] = link[0])",
		"icmp6[icmp6type] = icmp6-echo":                 "icmp6[icmp6type] = icmp6-echo",
	} {
		n, err := parseFilter(in)
		require.NoError(t, err, in)
		require.Equal(t, want, n.String(), in)
		again, err := parseFilter(n.String())
		require.NoError(t, err)
		require.Equal(t, n.String(), again.String())
	}
}

// dddFormat prints prog as tcpdump -ddd does.
func dddFormat(prog []bpf.RawInstruction) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", len(prog))
	for _, in := range prog {
		fmt.Fprintf(&b, "%d %d %d %d\n", in.Op, in.Jt, in.Jf, in.K)
	}
	return b.String()
}

func TestParseRawBPF(t *testing.T) {
	t.Parallel()
	// tcpdump -ddd 'tcp port 80' on Ethernet, as tcpdump 4.99 prints it.
	const tcpdump = `20
40 0 0 12
21 0 6 34525
48 0 0 20
21 0 15 6
40 0 0 54
21 12 0 80
40 0 0 56
21 10 11 80
21 0 10 2048
48 0 0 23
21 0 8 6
40 0 0 20
69 6 0 8191
177 0 0 14
72 0 0 14
21 2 0 80
72 0 0 16
21 0 1 80
6 0 0 262144
6 0 0 0
`
	prog, err := parseRawBPF(tcpdump)
	require.NoError(t, err)
	require.Len(t, prog, 20)
	packets := testPackets(t)
	require.Equal(t, []string{"tcp4"}, accepted(t, prog, packets, linkEthernet))
	comma, err := parseRawBPF(strings.ReplaceAll(strings.TrimSpace(tcpdump), "\n", ","))
	require.NoError(t, err)
	require.Equal(t, prog, comma)

	// Ours, printed and read back, is the same program.
	n, _ := parseFilter("udp or icmp6")
	mine, err := compileFilter(n, linkEthernet, 1500)
	require.NoError(t, err)
	back, err := parseRawBPF(dddFormat(mine))
	require.NoError(t, err)
	require.Equal(t, mine, back)

	// In front of it, the scope.
	scoped, err := prefixRaw(scopeNode{[]netip.Prefix{netip.MustParsePrefix("10.0.0.2/32")}}, linkEthernet, prog)
	require.NoError(t, err)
	require.Equal(t, []string{"tcp4"}, accepted(t, scoped, packets, linkEthernet))
	scoped, err = prefixRaw(scopeNode{[]netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")}}, linkEthernet, prog)
	require.NoError(t, err)
	require.Empty(t, accepted(t, scoped, packets, linkEthernet))

	for _, tc := range []struct{ in, want string }{
		{"", "is empty"},
		{"x\n6 0 0 0", "not the instruction count"},
		{"0\n", "0 instructions"},
		{"2\n6 0 0 0", "says 2 instructions, 1 follow"},
		{"1\n6 0 0", `is not "code jt jf k"`},
		{"1\n6 0 0 -1", "not four decimal numbers"},
		{"1\n6 0 256 0", "not four decimal numbers"},
		{"2\n21 1 0 80\n6 0 0 0", "jumps past the end"},
		{"2\n5 0 0 1\n6 0 0 0", "jumps past the end"},
		{"1\n40 0 0 12", "must end in a return"},
	} {
		_, err := parseRawBPF(tc.in)
		require.ErrorContains(t, err, tc.want, tc.in)
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "tcp port 80", "host 10.0.0.1 and not (udp or icmp)", "src net 2001:db8::/32",
		"tcp dst portrange 1-1024 || arp", "!ip6 && ip", "udp and (port 53 or portrange 67-68)",
		"tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", "icmp[icmptype] != icmp-echo", "ip[6:2] & 0x1fff != 0",
		"greater 1000 or less 64", "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "-len % 7 ^ 3 << 2 >= len/2",
		"ether[12:2] = 0x86dd and ip6[6] = 58 and icmp6[icmp6type] = icmp6-echo",
	} {
		f.Add(s)
	}
	packets := testPackets(f)
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseFilter(s)
		if err != nil || n == nil {
			return
		}
		again, err := parseFilter(n.String())
		if err != nil {
			t.Fatalf("%q parses, its canonical form %q does not: %v", s, n.String(), err)
		}
		if again.String() != n.String() {
			t.Fatalf("canonical form of %q changes: %q, then %q", s, n.String(), again.String())
		}
		for _, link := range []linkType{linkEthernet, linkRawIP} {
			prog, err := compileFilter(n, link, 65535)
			if err != nil {
				if strings.Contains(err.Error(), "more than the kernel's") {
					continue
				}
				t.Fatalf("compile %q: %v", s, err)
			}
			accepted(t, prog, packets, link) // runs without error on every packet
		}
	})
}

func FuzzParseRawBPF(f *testing.F) {
	f.Add("1\n6 0 0 65535\n")
	f.Add("4\n40 0 0 12\n21 0 1 2048\n6 0 0 65535\n6 0 0 0\n")
	f.Add("2,5 0 0 0,6 0 0 1")
	f.Fuzz(func(t *testing.T, s string) {
		prog, err := parseRawBPF(s)
		if err != nil {
			return
		}
		if len(prog) == 0 || len(prog) > maxInstructions {
			t.Fatalf("accepted %d instructions", len(prog))
		}
		back, err := parseRawBPF(dddFormat(prog))
		if err != nil || !slices.Equal(prog, back) {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}

// relPackets are Ethernet frames for comparisons and accessors, by name.
func relPackets(t testing.TB) map[string][]byte {
	withNet := func(tl interface {
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}, n gopacket.NetworkLayer) {
		require.NoError(t, tl.SetNetworkLayerForChecksum(n))
	}
	pk := map[string][]byte{}

	i := ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 1024}
	withNet(tcp, i)
	pk["syn4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, tcp) // 54 bytes

	i = ip4("10.0.0.2", "10.0.0.1", layers.IPProtocolTCP)
	i.TTL = 200
	tcp = &layers.TCP{SrcPort: 80, DstPort: 40000, SYN: true, ACK: true, Window: 1024}
	withNet(tcp, i)
	pk["synack4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, tcp)

	// IPv4 options (IHL 6) and TCP options (data offset 8) before an
	// HTTP request: only the header lengths find the payload.
	i = ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
	i.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	i.TTL = 32
	tcp = &layers.TCP{SrcPort: 40000, DstPort: 8080, ACK: true, PSH: true, Window: 1024, Options: []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{5, 180}},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
	}}
	withNet(tcp, i)
	pk["get4opts"] = serialize(t, eth(layers.EthernetTypeIPv4), i, tcp, gopacket.Payload("GET / HTTP/1.1\r\n\r\n"))

	i = ip4("10.0.0.3", "10.0.0.4", layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 5000, DstPort: 6000}
	withNet(udp, i)
	pk["udp4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, udp, gopacket.Payload{0x12, 0x34, 0x56})

	i = ip4("10.0.0.3", "10.0.0.4", layers.IPProtocolUDP)
	udp = &layers.UDP{SrcPort: 5001, DstPort: 6001}
	withNet(udp, i)
	pk["big4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, udp, gopacket.Payload(make([]byte, 1200)))

	i = ip4("10.0.0.1", "10.0.0.9", layers.IPProtocolICMPv4)
	pk["echo4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)})
	i = ip4("10.0.0.9", "10.0.0.1", layers.IPProtocolICMPv4)
	pk["unreach4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)})

	// A later fragment of a TCP segment: bytes where flags would be
	// say SYN, but there is no TCP header here.
	i = ip4("10.0.0.1", "10.0.0.2", layers.IPProtocolTCP)
	i.FragOffset = 100
	pk["frag4"] = serialize(t, eth(layers.EthernetTypeIPv4), i, gopacket.Payload(make([]byte, 20)))
	pk["frag4"][14+20+13] = 0x02

	i6 := ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolTCP)
	tcp = &layers.TCP{SrcPort: 40000, DstPort: 443, SYN: true, Window: 1024}
	withNet(tcp, i6)
	pk["syn6"] = serialize(t, eth(layers.EthernetTypeIPv6), i6, tcp)

	i6 = ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolUDP)
	udp = &layers.UDP{SrcPort: 5000, DstPort: 6000}
	withNet(udp, i6)
	pk["udp6"] = serialize(t, eth(layers.EthernetTypeIPv6), i6, udp, gopacket.Payload{0x12, 0x34})

	i6 = ip6("2001:db8::1", "2001:db8::2", layers.IPProtocolICMPv6)
	icmp6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
	withNet(icmp6, i6)
	pk["echo6"] = serialize(t, eth(layers.EthernetTypeIPv6), i6, icmp6, gopacket.Payload{0, 1, 0, 1})

	// A SYN cut short before its flags, as a small snaplen upstream or
	// a malformed packet leaves it.
	pk["short4"] = pk["syn4"][:14+20+12]

	pk["arp"] = serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: 1, SourceHwAddress: macA, SourceProtAddress: []byte{10, 0, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2},
	})
	return pk
}

func TestFilterComparisons(t *testing.T) {
	t.Parallel()
	packets := relPackets(t)
	// Frames shorter than 60 bytes are padded to 60 (gopacket does
	// as Ethernet needs); on raw IP the 14 bytes of Ethernet go.
	require.Len(t, packets["syn4"], 60)
	require.Len(t, packets["short4"], 46)
	require.Len(t, packets["get4opts"], 14+24+36+18) // TCP options padded to 16 bytes
	require.Len(t, packets["big4"], 14+20+8+1200)
	ip4s := []string{"big4", "echo4", "frag4", "get4opts", "short4", "syn4", "synack4", "udp4", "unreach4"}
	for _, tc := range []struct {
		filter string
		want   []string
		// onEthernet and onRaw are what the filter keeps beyond want
		// on Ethernet only or raw IP only (link-layer accessors,
		// lengths).
		onEthernet, onRaw []string
	}{
		// TCP flags, IPv4 and IPv6 alike; a later fragment and a
		// packet cut before the flags never match.
		{filter: "tcp[tcpflags] & tcp-syn != 0", want: []string{"syn4", "syn6", "synack4"}},
		{filter: "tcp[13] & 2 != 0", want: []string{"syn4", "syn6", "synack4"}},
		{filter: "tcp[13] & 2 = 2", want: []string{"syn4", "syn6", "synack4"}},
		{filter: "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn", want: []string{"syn4", "syn6"}},
		{filter: "tcp[tcpflags] & (tcp-syn|tcp-ack) = (tcp-syn|tcp-ack)", want: []string{"synack4"}},
		{filter: "tcp[tcpflags] & tcp-push != 0", want: []string{"get4opts"}},
		{filter: "tcp[tcpflags] & (tcp-fin|tcp-rst|tcp-urg|tcp-ece|tcp-cwr) != 0", want: nil},
		{filter: "tcp[tcpflags] = 0", want: nil},
		{filter: "tcp[13] & 2 = 0", want: []string{"get4opts"}},
		// not cannot turn a load past the end into a match.
		{filter: "not tcp[13] & 2 != 0", want: []string{"arp", "big4", "echo4", "echo6", "frag4", "get4opts", "udp4", "udp6", "unreach4"}},
		{filter: "tcp[0:2] = 40000", want: []string{"get4opts", "short4", "syn4", "syn6"}},
		{filter: "tcp[2:2] = 80 or tcp[0:2] = 80", want: []string{"short4", "syn4", "synack4"}},
		{filter: "udp[8:2] = 0x1234", want: []string{"udp4", "udp6"}},
		{filter: "udp[8:1] == 0x12 and ip", want: []string{"udp4"}},
		// udp4's Ethernet padding reads as zeros; udp6 ends first.
		{filter: "udp[8:4] = 0x12345600", want: []string{"udp4"}},
		{filter: "udp[8:4] != 0", want: []string{"udp4"}},
		{filter: "udp[2:2] - udp[0:2] = 1000", want: []string{"big4", "udp4", "udp6"}},
		// ICMP type names.
		{filter: "icmp[icmptype] == icmp-echo", want: []string{"echo4"}},
		{filter: "icmp[icmptype] = icmp-unreach and icmp[icmpcode] = 3", want: []string{"unreach4"}},
		{filter: "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply", want: []string{"unreach4"}},
		{filter: "icmp6[icmp6type] = icmp6-echo", want: []string{"echo6"}},
		{filter: "icmp6[icmp6type] = icmp6-neighborsolicit", want: nil},
		{filter: "icmp[0] = 128", want: nil}, // icmp[] is ICMP over IPv4 only
		// IP header fields.
		{filter: "ip[8] < 64", want: []string{"get4opts"}},
		{filter: "ip[8] <= 64", want: []string{"big4", "echo4", "frag4", "get4opts", "short4", "syn4", "udp4", "unreach4"}},
		{filter: "ip[8] > 64", want: []string{"synack4"}},
		{filter: "ip[8] >= 200", want: []string{"synack4"}},
		{filter: "ip[6:2] & 0x1fff != 0", want: []string{"frag4"}},
		{filter: "ip[0] & 0xf > 5", want: []string{"get4opts"}},
		{filter: "ip[0] & 0xf != 5", want: []string{"get4opts"}},
		{filter: "ip[9] = 17", want: []string{"big4", "udp4"}},
		{filter: "ip6[6] = 58", want: []string{"echo6"}},
		{filter: "ip6[7] = 64", want: []string{"echo6", "syn6", "udp6"}},
		{filter: "ip[0] = ip6[0]", want: nil}, // no packet is both
		// Lengths; ether[] needs the link header a tun device lacks.
		{filter: "len > 1000", want: []string{"big4"}},
		{filter: "greater 1000", want: []string{"big4"}},
		{filter: "greater 1243", want: nil, onRaw: nil},
		{filter: "len = 1242", want: nil, onEthernet: []string{"big4"}},
		{filter: "len = 1228", want: nil, onRaw: []string{"big4"}},
		{filter: "len - 14 = 1228", want: nil, onEthernet: []string{"big4"}},
		{filter: "len >= 92 and less 92", want: nil, onEthernet: []string{"get4opts"}},
		{filter: "less 46", want: []string{"short4"}, onRaw: []string{"echo4", "frag4", "syn4", "synack4", "udp4", "unreach4"}},
		{filter: "ether[12:2] = 0x86dd", want: nil, onEthernet: []string{"echo6", "syn6", "udp6"}},
		{filter: "link[0] & 1 = 0 and ip6", want: nil, onEthernet: []string{"echo6", "syn6", "udp6"}},
		// Without a link header, ether[] is false, as arp is.
		{filter: "not ether[12:2] = 0x0806", want: append(slices.Clone(ip4s), "echo6", "syn6", "udp6")},
		// Variable offsets: the HTTP request after both header lengths.
		{filter: "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", want: []string{"get4opts"}},
		{filter: "tcp[(tcp[12] >> 4) * 4] = 0x47", want: []string{"get4opts"}},
		{filter: "tcp[tcp[12] / 16 * 4 + 1:2] = 0x4554 and tcp[2:2] = 8080", want: []string{"get4opts"}},
		// By hand through ip[], later fragments are not left out.
		{filter: "ip[ip[0] % 16 * 4 + 13] & tcp-syn != 0 and ip[9] = 6", want: []string{"frag4", "syn4", "synack4"}},
	} {
		requireKeeps(t, tc.filter, packets, func(link linkType) []string {
			want := slices.Clone(tc.want)
			if link == linkEthernet {
				want = append(want, tc.onEthernet...)
			} else {
				want = append(want, tc.onRaw...)
				want = slices.DeleteFunc(want, func(s string) bool { return s == "arp" })
			}
			sort.Strings(want)
			return want
		})
	}
}

// TestFilterArithmetic computes expressions in the BPF VM, on syn4 (60
// bytes on Ethernet, TCP from port 40000 to 80, data offset 5, SYN),
// and checks them against Go's uint32 arithmetic.
func TestFilterArithmetic(t *testing.T) {
	t.Parallel()
	pk := map[string][]byte{"syn4": relPackets(t)["syn4"]}
	var l, sp, dp uint32 = 60, 40000, 80
	for _, tc := range []struct {
		expr string
		want uint32
	}{
		{"len", l},
		{"len - 2 * 3", l - 6},
		{"(len - 2) * 3", (l - 2) * 3},
		{"len | 1 & 2", l | 1&2},
		{"len & 15 ^ 3", (l & 15) ^ 3},
		{"len ^ 0xff | 0x100", (l ^ 0xff) | 0x100},
		{"len << 1 + 1", l << 2},
		{"len >> 2 << 2", l >> 2 << 2},
		{"-len + 61", 1},
		{"0 - len", -l},
		{"len % 7", l % 7},
		{"len / 7 * 7", l / 7 * 7},
		{"100 - len", 100 - l},
		{"100 / (len - 50)", 100 / (l - 50)},
		{"tcp[0:2]", sp},
		{"tcp[0:2] * 2", sp * 2},
		{"tcp[0:2] + tcp[2:2]", sp + dp},
		{"tcp[0:2] - tcp[2:2]", sp - dp},
		{"tcp[2:2] - tcp[0:2]", dp - sp},
		{"(tcp[0:2] - tcp[2:2]) * (tcp[0:2] + tcp[2:2])", (sp - dp) * (sp + dp)},
		{"tcp[0:2] / (tcp[2:2] - 70)", sp / 10},
		{"tcp[0:2] % tcp[2:2]", sp % dp},
		{"tcp[0:2] << (tcp[12] >> 4)", sp << 5},
		{"tcp[0:4]", sp<<16 | dp},
		{"tcp[(tcp[12] >> 4) - 3:2]", dp},            // tcp[2:2]
		{"tcp[tcp[13] + tcp[13]:2]", 0},              // tcp[2+2:2]: the sequence number, 0
		{"ip[ip[0] & 0xf] + tcp[tcp[13]:2]", dp},     // ip[5], the ID's low byte, 0, + tcp[2:2]
		{"len - (len - (len - (len - tcp[13])))", 2}, // nested pairs
		{"-(tcp[13] - 3) * -(tcp[13] - 3)", 1},       // -(−1) squared
		{"tcp-syn | tcp-ack | tcp-fin", 0x13},        // constants fold
	} {
		for _, rel := range []struct {
			f    string
			keep bool
		}{
			{fmt.Sprintf("%s = %d", tc.expr, tc.want), true},
			{fmt.Sprintf("%s != %d", tc.expr, tc.want), false},
			{fmt.Sprintf("%d = %s", tc.want, tc.expr), true},
			{fmt.Sprintf("%s >= %s", tc.expr, tc.expr), true},
			{fmt.Sprintf("%s < %s", tc.expr, tc.expr), false},
		} {
			n, err := parseFilter(rel.f)
			require.NoError(t, err, rel.f)
			prog, err := compileFilter(n, linkEthernet, 65535)
			require.NoError(t, err, rel.f)
			got := accepted(t, prog, pk, linkEthernet)
			require.Equal(t, rel.keep, len(got) == 1, "%s", rel.f)
		}
	}
}

// TestFilterAgreesWithTcpdump runs programs written after libpcap's code
// generation (gencode.c: IPv4 only, first fragment, IHL from ldxb) next
// to ours: on every IPv4 packet and ARP they agree. Ours also reads TCP
// over IPv6, where tcpdump's tcp[] reads nothing.
func TestFilterAgreesWithTcpdump(t *testing.T) {
	t.Parallel()
	packets := relPackets(t)
	v4 := map[string][]byte{}
	for name, p := range packets {
		if !strings.HasSuffix(name, "6") {
			v4[name] = p
		}
	}
	for _, tc := range []struct{ filter, tcpdump string }{
		// tcp[13] & 2 != 0
		{"tcp[tcpflags] & tcp-syn != 0", `11
40 0 0 12
21 0 8 2048
48 0 0 23
21 0 6 6
40 0 0 20
69 4 0 8191
177 0 0 14
80 0 0 27
69 0 1 2
6 0 0 262144
6 0 0 0
`},
		// icmp[0] = 8
		{"icmp[icmptype] == icmp-echo", `11
40 0 0 12
21 0 8 2048
48 0 0 23
21 0 6 1
40 0 0 20
69 4 0 8191
177 0 0 14
80 0 0 14
21 0 1 8
6 0 0 262144
6 0 0 0
`},
		// len >= 1000
		{"greater 1000", `4
128 0 0 0
53 0 1 1000
6 0 0 262144
6 0 0 0
`},
	} {
		theirs, err := parseRawBPF(tc.tcpdump)
		require.NoError(t, err)
		n, err := parseFilter(tc.filter)
		require.NoError(t, err)
		ours, err := compileFilter(n, linkEthernet, 65535)
		require.NoError(t, err)
		require.Equal(t, accepted(t, theirs, v4, linkEthernet), accepted(t, ours, v4, linkEthernet), tc.filter)
		require.NotEmpty(t, accepted(t, ours, v4, linkEthernet), tc.filter)
	}
}
