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
		n, err := parseFilter(tc.filter)
		require.NoError(t, err, tc.filter)
		for _, link := range []linkType{linkEthernet, linkRawIP} {
			prog, err := compileFilter(n, link, 65535)
			require.NoError(t, err, tc.filter)
			want := tc.want
			if link == linkRawIP {
				want = slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "arp" })
			}
			got := accepted(t, prog, packets, link)
			if len(want) == 0 {
				require.Empty(t, got, "filter %q, link %d", tc.filter, link)
			} else {
				require.Equal(t, want, got, "filter %q, link %d", tc.filter, link)
			}
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
		{"tcp[13] & 2 != 0", `unexpected '['`},
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
		"tcp port 80":                               "tcp port 80",
		"  !  ( HOST 10.0.0.1 )":                    "not host 10.0.0.1",
		"arp or tcp and udp dst port 1":             "((arp or tcp) and udp dst port 1)",
		"host ::ffff:10.1.2.3":                      "host 10.1.2.3",
		"net 10.1.2.3/8":                            "net 10.0.0.0/8",
		"portrange 1-2 && !icmp6 || ip6":            "((portrange 1-2 and not icmp6) or ip6)",
		"src net 2001:db8::1 and dst host ::1":      "(src net 2001:db8::1/128 and dst host ::1)",
		"sctp and sctp src portrange 0-65535":       "(sctp and sctp src portrange 0-65535)",
		"not not (tcp)":                             "not not tcp",
		"udp\tport\n53":                             "udp port 53",
		"((((tcp))))":                               "tcp",
		"host 10.0.0.1 and not host 10.0.0.2 or ip": "((host 10.0.0.1 and not host 10.0.0.2) or ip)",
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
