package capture_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/capture"
	"github.com/scanfleet/scanfleet/scanner/internal/netnstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	hereIP  = "10.88.0.1" // the capturing side, interface c0
	thereIP = "10.88.0.2" // the other side, interface c1
	thirdIP = "10.88.0.3" // a second address of the other side
)

// pair is two namespaces joined by one veth pair: here (c0) captures;
// there (c1) runs a TCP listener on :9000 that reads and closes.
type pair struct{ here, there string }

func newPair(t *testing.T) pair {
	t.Helper()
	p := pair{here: netnstest.New(t, "sfcap"), there: netnstest.New(t, "sfcap")}
	for _, ns := range []string{p.here, p.there} {
		// No IPv6 neighbour discovery chatter on the link.
		netnstest.Sysctl(t, ns, "net.ipv6.conf.default.disable_ipv6", "1")
		netnstest.Sysctl(t, ns, "net.ipv6.conf.all.disable_ipv6", "1")
	}
	netnstest.Veth(t, p.here, "c0", hereIP+"/24", p.there, "c1", thereIP+"/24")
	netnstest.IP(t, "-n", p.there, "addr", "add", thirdIP+"/24", "dev", "c1")
	var ln net.Listener
	require.NoError(t, netnstest.Do(p.there, func() (err error) {
		ln, err = net.Listen("tcp4", "0.0.0.0:9000")
		return err
	}))
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return p
}

// udp sends datagrams from here to addr, where nothing listens: there
// answers with ICMP port unreachable, more traffic for filters to skip.
func (p pair) udp(t *testing.T, addr string, payloads ...string) {
	t.Helper()
	to, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	require.NoError(t, netnstest.Do(p.here, func() error {
		// Unconnected, so that the port unreachable fails no write.
		c, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, pl := range payloads {
			if _, err := c.WriteToUDP([]byte(pl), to); err != nil {
				return err
			}
		}
		return nil
	}))
}

// tcp connects from here to there's listener and sends msg.
func (p pair) tcp(t *testing.T, msg string) {
	t.Helper()
	require.NoError(t, netnstest.Do(p.here, func() error {
		c, err := net.DialTimeout("tcp4", thereIP+":9000", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(msg))
		return err
	}))
}

// running is a capture task running in namespace here.
type running struct {
	env    *scanner.LocalEnv
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	logs   []string
}

// start runs a capture on c0 and returns once it listens (or failed).
func start(t *testing.T, p pair, in *scanfleet.TaskInput) *running {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	r := &running{cancel: cancel, done: make(chan error, 1)}
	listening := make(chan struct{})
	var once sync.Once
	r.env = &scanner.LocalEnv{OnLog: func(line string) {
		r.mu.Lock()
		r.logs = append(r.logs, line)
		r.mu.Unlock()
		if strings.HasPrefix(line, "capture: listening") {
			once.Do(func() { close(listening) })
		}
	}}
	if in.Args == nil {
		in.Args = map[string]any{}
	}
	if _, ok := in.Args["interface"]; !ok {
		in.Args["interface"] = "c0"
	}
	go func() {
		r.done <- netnstest.Do(p.here, func() error {
			return capture.New(capture.Config{PollInterval: 20 * time.Millisecond, TempDir: t.TempDir()}).Run(ctx, in, r.env)
		})
	}()
	t.Cleanup(func() { cancel(); <-listening })
	select {
	case <-listening:
	case err := <-r.done:
		r.done <- err
		once.Do(func() { close(listening) })
	case <-time.After(30 * time.Second):
		t.Fatal("capture did not start")
	}
	return r
}

// wait returns the task's error once it ended.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("capture did not stop")
		return nil
	}
}

// packets reads the stored pcap back.
func (r *running) packets(t *testing.T) []gopacket.Packet {
	t.Helper()
	b, ok := r.env.ArtifactBytes(capture.ArtifactName)
	require.True(t, ok, "artifact stored")
	require.EqualValues(t, len(b), r.env.Results()["bytes"], "bytes counts the whole file")
	rd, err := pcapgo.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, layers.LinkTypeEthernet, rd.LinkType())
	var out []gopacket.Packet
	for {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		p.Metadata().CaptureInfo = ci
		out = append(out, p)
	}
	require.EqualValues(t, len(out), r.env.Results()["packets"])
	return out
}

func udpOf(t *testing.T, p gopacket.Packet) (*layers.IPv4, *layers.UDP) {
	t.Helper()
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	require.NotNil(t, ip, "IPv4: %v", p)
	require.NotNil(t, udp, "UDP: %v", p)
	return ip, udp
}

func TestCaptureKeepsWhatTheFilterSelects(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{"10.88.0.0/24"},
		Args:    map[string]any{"filter": "udp dst port 9001", "count": float64(5)},
	})
	// Noise on either side of the datagrams the filter wants.
	p.tcp(t, "not this")
	p.udp(t, thereIP+":9002", "nor this")
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("datagram %d", i))
	}
	p.udp(t, thereIP+":9001", want...)
	p.udp(t, thereIP+":9002", "nor this after")
	require.NoError(t, r.wait(t))

	pkts := r.packets(t)
	require.Len(t, pkts, 5)
	for i, pk := range pkts {
		ip, udp := udpOf(t, pk)
		require.Equal(t, hereIP, ip.SrcIP.String())
		require.Equal(t, thereIP, ip.DstIP.String())
		require.EqualValues(t, 9001, udp.DstPort)
		require.Equal(t, want[i], string(udp.Payload))
	}
	res := r.env.Results()
	require.Equal(t, "count", res["stop_reason"])
	require.EqualValues(t, 5, res["packets"])
	require.EqualValues(t, 0, res["dropped"])
	require.Equal(t, "in scope and udp dst port 9001", res["filter"])
}

func TestCaptureTCPHandshake(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	// No targets: without scope_only, the filter alone decides.
	r := start(t, p, &scanfleet.TaskInput{
		Args: map[string]any{"filter": "tcp port 9000", "count": float64(2), "scope_only": false},
	})
	p.udp(t, thereIP+":9001", "noise")
	p.tcp(t, "hello")
	require.NoError(t, r.wait(t))
	pkts := r.packets(t)
	require.Len(t, pkts, 2)
	syn := pkts[0].Layer(layers.LayerTypeTCP).(*layers.TCP)
	require.True(t, syn.SYN && !syn.ACK, "first the SYN: %v", pkts[0])
	require.EqualValues(t, 9000, syn.DstPort)
	synAck := pkts[1].Layer(layers.LayerTypeTCP).(*layers.TCP)
	require.True(t, synAck.SYN && synAck.ACK, "then the SYN-ACK: %v", pkts[1])
	require.EqualValues(t, 9000, synAck.SrcPort)
	require.Equal(t, "tcp port 9000", r.env.Results()["filter"])
}

func TestCaptureTCPFlags(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	// Only segments with SYN set: the second connection's SYN comes
	// right after the first's SYN-ACK, past its ACK and data.
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{thereIP},
		Args:    map[string]any{"filter": "tcp[tcpflags] & tcp-syn != 0", "count": float64(3)},
	})
	p.udp(t, thereIP+":9001", "noise")
	p.tcp(t, "first")
	p.tcp(t, "second")
	require.NoError(t, r.wait(t))
	pkts := r.packets(t)
	require.Len(t, pkts, 3)
	for i, want := range []struct{ syn, ack bool }{{true, false}, {true, true}, {true, false}} {
		tcp, ok := pkts[i].Layer(layers.LayerTypeTCP).(*layers.TCP)
		require.True(t, ok, "TCP: %v", pkts[i])
		require.Equal(t, want.syn, tcp.SYN, "packet %d: %v", i, pkts[i])
		require.Equal(t, want.ack, tcp.ACK, "packet %d: %v", i, pkts[i])
		require.Empty(t, tcp.Payload, "packet %d", i)
	}
	require.NotEqual(t, pkts[0].Layer(layers.LayerTypeTCP).(*layers.TCP).SrcPort,
		pkts[2].Layer(layers.LayerTypeTCP).(*layers.TCP).SrcPort, "two connections")
	require.Equal(t, "in scope and (tcp[tcpflags] & tcp-syn) != 0", r.env.Results()["filter"])
}

func TestCaptureScopeOnly(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	// Only the second address is a target: traffic to the first is
	// someone else's. (The port unreachables from the second are in
	// scope; the filter leaves them out.)
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{thirdIP},
		Args:    map[string]any{"filter": "udp", "count": float64(3)},
	})
	p.udp(t, thereIP+":9001", "a", "b")
	p.tcp(t, "c")
	p.udp(t, thirdIP+":9001", "in 1", "in 2", "in 3")
	require.NoError(t, r.wait(t))
	pkts := r.packets(t)
	require.Len(t, pkts, 3)
	for i, pk := range pkts {
		ip, udp := udpOf(t, pk)
		require.Equal(t, thirdIP, ip.DstIP.String())
		require.Equal(t, fmt.Sprintf("in %d", i+1), string(udp.Payload))
	}
	require.Equal(t, "in scope and udp", r.env.Results()["filter"])
}

func TestCaptureRawBPFWithinScope(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	// IPv4 UDP, as tcpdump -ddd 'ip and udp' prints it.
	const udp4 = "6\n40 0 0 12\n21 0 3 2048\n48 0 0 23\n21 0 1 17\n6 0 0 65535\n6 0 0 0\n"
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{thirdIP},
		Args:    map[string]any{"bpf": udp4, "count": float64(2)},
	})
	p.udp(t, thereIP+":9001", "out of scope")
	p.tcp(t, "not udp")
	p.udp(t, thirdIP+":9001", "one", "two")
	require.NoError(t, r.wait(t))
	pkts := r.packets(t)
	require.Len(t, pkts, 2)
	for _, pk := range pkts {
		ip, _ := udpOf(t, pk)
		require.Equal(t, thirdIP, ip.DstIP.String())
	}
}

func TestCaptureStopsAtMaxBytes(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{thereIP},
		Args:    map[string]any{"filter": "udp", "max_bytes": float64(1024)},
	})
	// Each: 16 bytes of record header + 14 + 20 + 8 + 100 = 158; six fit
	// after the 24-byte file header, the seventh would not.
	var payloads []string
	for range 10 {
		payloads = append(payloads, strings.Repeat("x", 100))
	}
	p.udp(t, thereIP+":9001", payloads...)
	require.NoError(t, r.wait(t))
	pkts := r.packets(t)
	require.Len(t, pkts, 6)
	res := r.env.Results()
	require.Equal(t, "bytes", res["stop_reason"])
	require.EqualValues(t, 24+6*158, res["bytes"])
}

func TestCaptureStopsAfterDuration(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{thereIP},
		Args:    map[string]any{"filter": "udp port 9999", "duration": "300ms"},
	})
	p.udp(t, thereIP+":9001", "not captured")
	require.NoError(t, r.wait(t))
	require.Empty(t, r.packets(t))
	require.Equal(t, "duration", r.env.Results()["stop_reason"])
}

func TestCaptureCancelKeepsWhatItHas(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{thereIP},
		Args:    map[string]any{"filter": "udp port 9001", "duration": "10m"},
	})
	p.udp(t, thereIP+":9001", "kept")
	// Cancel once the capture reported the datagram (progress is
	// reported within a second of a packet).
	require.Eventually(t, func() bool { done, _ := r.env.LastProgress(); return done == 1 }, 20*time.Second, 20*time.Millisecond)
	r.cancel()
	require.ErrorIs(t, r.wait(t), context.Canceled)
	require.Equal(t, "cancel", r.env.Results()["stop_reason"])
	pkts := r.packets(t)
	require.Len(t, pkts, 1, "what was captured before the cancel is stored")
	_, udp := udpOf(t, pkts[0])
	require.Equal(t, "kept", string(udp.Payload))
}

func TestCaptureSnaplen(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	r := start(t, p, &scanfleet.TaskInput{
		Targets: []string{thereIP},
		Args:    map[string]any{"filter": "udp port 9001", "snaplen": float64(64), "count": float64(1)},
	})
	p.udp(t, thereIP+":9001", strings.Repeat("y", 500))
	require.NoError(t, r.wait(t))
	pkts := r.packets(t)
	require.Len(t, pkts, 1)
	ci := pkts[0].Metadata().CaptureInfo
	require.Equal(t, 64, ci.CaptureLength)
	require.Equal(t, 14+20+8+500, ci.Length)
}

func TestCaptureRefuses(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	p := newPair(t)
	for _, tc := range []struct {
		in   *scanfleet.TaskInput
		want string
	}{
		{&scanfleet.TaskInput{Targets: []string{thereIP}, Args: map[string]any{"interface": "nope0"}}, `args.interface: no interface "nope0"`},
		{&scanfleet.TaskInput{Targets: []string{thereIP}, Args: map[string]any{"interface": "c0", "filter": "port"}}, "args.filter: port at offset 0 needs a port"},
		{&scanfleet.TaskInput{Targets: []string{thereIP}, Args: map[string]any{"interface": "c0", "filter": "tcp", "bpf": "1\n6 0 0 1"}}, "either filter or bpf"},
		{&scanfleet.TaskInput{Targets: []string{thereIP}, Args: map[string]any{"interface": "c0", "bpf": "1\n40 0 0 12"}}, "args.bpf: line 2: the program must end in a return"},
		{&scanfleet.TaskInput{Targets: []string{thereIP}, Args: map[string]any{"interface": "c0", "duration": "0s"}}, "args.duration"},
		{&scanfleet.TaskInput{Targets: []string{thereIP}, Args: map[string]any{}}, "args.interface: is mandatory"},
		{&scanfleet.TaskInput{Targets: []string{thereIP}, Args: map[string]any{"interface": "c0", "max_bytes": float64(1 << 30)}}, "args.max_bytes"},
		// Nothing of the targets is in scope: nothing could be kept.
		{&scanfleet.TaskInput{
			Targets: []string{thereIP, "example.com"},
			Scope:   &scanfleet.Scope{Include: []string{"192.0.2.0/24", "example.com"}},
			Args:    map[string]any{"interface": "c0"},
		}, "args.scope_only: no target address"},
	} {
		err := netnstest.Do(p.here, func() error {
			return capture.New(capture.Config{}).Run(t.Context(), tc.in, &scanner.LocalEnv{})
		})
		require.Error(t, err)
		require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err), "%v", err)
		require.Contains(t, scanfleet.ErrorMessage(err), tc.want)
	}
}

func TestTaskType(t *testing.T) {
	t.Parallel()
	tt := capture.New(capture.Config{}).TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, "capture", tt.Name)
	require.Equal(t, scanfleet.PoolBaremetal, tt.Pool())
}
