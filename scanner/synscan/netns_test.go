//go:build linux

package synscan_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/internal/netnstest"
	"github.com/scanfleet/scanfleet/scanner/synscan"
)

// The scanner runs in-process on a thread moved into the scanner
// namespace (netnstest.Do): Run opens every socket it uses on the
// goroutine that calls it, before it starts its own goroutines, so all of
// them belong to that namespace. Listeners and the packet counter are
// opened the same way in the target namespace.

// lab is two namespaces joined by a veth pair: the scanner at net.1, the
// target at net.2; routedNet adds a network whose every address is local
// to the target (AnyIP) and reached through it from the scanner.
type lab struct {
	scanner, target string
	scannerIP       netip.Addr
	targetIP        netip.Addr
	targetIf        string
}

func newLab(t *testing.T, v6 bool) *lab {
	t.Helper()
	netnstest.Require(t)
	var r [3]byte
	_, _ = rand.Read(r[:])
	l := &lab{scanner: netnstest.New(t, "sfsyn-s"), target: netnstest.New(t, "sfsyn-t"), targetIf: "sft0"}
	if v6 {
		base := netip.AddrFrom16([16]byte{0xfd, r[0], r[1], r[2], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		l.scannerIP, l.targetIP = base.Next(), base.Next().Next()
		netnstest.IP(t, "-n", l.scanner, "link", "add", "sfs0", "type", "veth", "peer", "name", "sft0", "netns", l.target)
		netnstest.IP(t, "-n", l.scanner, "addr", "add", l.scannerIP.String()+"/64", "dev", "sfs0", "nodad")
		netnstest.IP(t, "-n", l.target, "addr", "add", l.targetIP.String()+"/64", "dev", "sft0", "nodad")
		netnstest.IP(t, "-n", l.scanner, "link", "set", "sfs0", "up")
		netnstest.IP(t, "-n", l.target, "link", "set", "sft0", "up")
	} else {
		l.scannerIP = netip.AddrFrom4([4]byte{10, r[0], r[1], 1})
		l.targetIP = netip.AddrFrom4([4]byte{10, r[0], r[1], 2})
		netnstest.Veth(t, l.scanner, "sfs0", l.scannerIP.String()+"/24", l.target, "sft0", l.targetIP.String()+"/24")
	}
	return l
}

// routedNet returns a random 10.x.y.0/24 other than the lab's own, every
// address of it local to the target and routed to it from the scanner.
func (l *lab) routedNet(t *testing.T) netip.Prefix {
	var r [2]byte
	for {
		_, _ = rand.Read(r[:])
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, r[0], r[1], 0}), 24)
		if p.Contains(l.targetIP) {
			continue
		}
		netnstest.IP(t, "-n", l.target, "route", "add", "local", p.String(), "dev", "lo")
		netnstest.IP(t, "-n", l.scanner, "route", "add", p.String(), "via", l.targetIP.String(), "dev", "sfs0")
		return p
	}
}

// listen opens TCP listeners in the target namespace, on the given ports
// (0 picks one), and returns the ports.
func (l *lab) listen(t *testing.T, ports ...int) []int {
	t.Helper()
	var out []int
	var wg sync.WaitGroup
	var lns []net.Listener
	// Closed, then waited for: cleanups run last-registered first.
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	for _, p := range ports {
		var ln net.Listener
		require.NoError(t, netnstest.Do(l.target, func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort("::", strconv.Itoa(p)))
			return err
		}))
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		})
	}
	sort.Ints(out)
	return out
}

// synCounter counts the TCP SYNs the target namespace receives, per
// destination address, with an AF_PACKET socket on the target's veth.
type synCounter struct {
	fd   int
	mu   sync.Mutex
	byIP map[netip.Addr]int
	done chan struct{}
	stop func()
}

func (l *lab) countSYNs(t *testing.T) *synCounter {
	t.Helper()
	c := &synCounter{byIP: map[netip.Addr]int{}, done: make(chan struct{})}
	require.NoError(t, netnstest.Do(l.target, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(l.targetIf)
		if err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000})
		c.fd = fd
		return nil
	}))
	stop := make(chan struct{})
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue
			}
			if dst, ok := synTo(buf[:n]); ok {
				c.mu.Lock()
				c.byIP[dst]++
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-c.done
		unix.Close(c.fd)
	})
	c.stop = func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-c.done
	}
	return c
}

// counts stops counting and returns the SYNs seen per address.
func (c *synCounter) counts() map[netip.Addr]int {
	time.Sleep(100 * time.Millisecond) // what is in flight
	c.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byIP
}

func synTo(p []byte) (netip.Addr, bool) {
	switch {
	case len(p) >= 40 && p[0]>>4 == 4 && p[9] == 6:
		ihl := int(p[0]&0xf) * 4
		if len(p) >= ihl+14 && p[ihl+13]&0x12 == 0x02 {
			return netip.AddrFrom4([4]byte(p[16:20])), true
		}
	case len(p) >= 60 && p[0]>>4 == 6 && p[6] == 6:
		if p[40+13]&0x12 == 0x02 {
			return netip.AddrFrom16([16]byte(p[24:40])), true
		}
	}
	return netip.Addr{}, false
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// scan runs the executor in the scanner namespace.
func (l *lab) scan(ctx context.Context, t *testing.T, in *scanfleet.TaskInput, env *scanner.LocalEnv) error {
	t.Helper()
	if in.Scope == nil {
		in.Scope = &scanfleet.Scope{Include: in.Targets}
	}
	return netnstest.Do(l.scanner, func() error { return synscan.Executor{}.Run(ctx, in, env) })
}

// found returns the open ports recorded, as "ip:port", and the hosts.
func found(t *testing.T, env *scanner.LocalEnv) (services []string, hosts []string) {
	t.Helper()
	for _, r := range env.Records() {
		switch r.Kind {
		case scanfleet.KindService:
			require.Equal(t, "tcp", r.Data["proto"])
			require.Equal(t, "open", r.Data["state"])
			services = append(services, r.Key)
		case scanfleet.KindHost:
			require.Equal(t, "up", r.Data["state"])
			hosts = append(hosts, r.Key)
		}
	}
	sort.Strings(services)
	sort.Strings(hosts)
	return services, hosts
}

// status returns the counts per state of the task's output.
func status(t *testing.T, env *scanner.LocalEnv) map[string]uint64 {
	t.Helper()
	res := env.Results()
	st := map[string]uint64{}
	for _, k := range scanfleet.ServiceStates {
		switch v := res[k].(type) {
		case uint64:
			st[k] = v
		case int:
			st[k] = uint64(v)
		}
	}
	for _, k := range []string{"open", "closed", "filtered", "timeout", "out-of-scope"} {
		require.Contains(t, res, k)
	}
	return st
}

func TestOneHostAllPorts(t *testing.T) {
	t.Parallel()
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			t.Parallel()
			l := newLab(t, v6)
			open := l.listen(t, 0, 0, 0, 0, 0, 0, 0, 65535)
			env := &scanner.LocalEnv{}
			err := l.scan(t.Context(), t, &scanfleet.TaskInput{
				Targets: []string{l.targetIP.String()},
				Args:    map[string]any{"ports": "1-65535", "rate": 200_000},
			}, env)
			require.NoError(t, err, "logs: %v", env.Logs())
			services, hosts := found(t, env)
			var want []string
			for _, p := range open {
				want = append(want, net.JoinHostPort(l.targetIP.String(), strconv.Itoa(p))+"/tcp")
			}
			sort.Strings(want)
			require.Equal(t, want, services)
			require.Equal(t, []string{l.targetIP.String()}, hosts)
			st := status(t, env)
			require.Equal(t, uint64(len(open)), st["open"])
			require.Equal(t, uint64(65535-len(open)), st["closed"])
			require.Zero(t, st["timeout"])
			require.GreaterOrEqual(t, env.Results()["probes_sent"], uint64(65535))
			done, total := env.LastProgress()
			require.Equal(t, int64(65535), total)
			require.Equal(t, total, done)
		})
	}
}

func TestNetworkEveryAddressAnswers(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	l := newLab(t, false)
	pfx := l.routedNet(t)
	l.listen(t, 80)
	env := &scanner.LocalEnv{}
	err := l.scan(t.Context(), t, &scanfleet.TaskInput{
		Targets: []string{pfx.String()},
		Args:    map[string]any{"ports": "80,81"},
	}, env)
	require.NoError(t, err, "logs: %v", env.Logs())
	services, hosts := found(t, env)
	require.Len(t, services, 256)
	require.Len(t, hosts, 256)
	for a := pfx.Addr(); pfx.Contains(a); a = a.Next() {
		require.Contains(t, services, a.String()+":80/tcp")
	}
	st := status(t, env)
	require.Equal(t, uint64(256), st["open"])
	require.Equal(t, uint64(256), env.Results()["hosts_up"])
	require.Equal(t, uint64(256), st["closed"]) // port 81
	require.Zero(t, st["timeout"])
}

// Senders share the socket but not the headers of their sendmmsg calls:
// with shared headers one sender overwrote the other's probes, so some
// were sent twice and others never (or the call failed with EINVAL).
func TestSendersEachProbeOnce(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	l := newLab(t, false)
	pfx := l.routedNet(t)
	l.listen(t, 80)
	env := &scanner.LocalEnv{}
	err := l.scan(t.Context(), t, &scanfleet.TaskInput{
		Targets: []string{pfx.String()},
		Args:    map[string]any{"ports": "71-90", "senders": 4, "retries": 0},
	}, env)
	require.NoError(t, err, "logs: %v", env.Logs())
	services, _ := found(t, env)
	require.Equal(t, 256, len(services), "open ports found")
	st := status(t, env)
	require.Equal(t, uint64(256), st["open"])
	require.Equal(t, uint64(19*256), st["closed"])
	require.Zero(t, st["timeout"])
	require.Equal(t, uint64(20*256), env.Results()["probes_sent"])
}

func TestExcludedAddressesAreNeverProbed(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	l := newLab(t, false)
	pfx := l.routedNet(t)
	l.listen(t, 80)
	base := pfx.Addr().As4()
	excludedOne := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 7})
	excludedNet := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], base[2], 64}), 28)
	counter := l.countSYNs(t)
	env := &scanner.LocalEnv{}
	err := l.scan(t.Context(), t, &scanfleet.TaskInput{
		Targets: []string{pfx.String()},
		Exclude: []string{excludedOne.String()},
		Scope:   &scanfleet.Scope{Include: []string{pfx.String()}, Exclude: []string{excludedNet.String()}},
		Args:    map[string]any{"ports": "80,443", "retries": 2},
	}, env)
	require.NoError(t, err, "logs: %v", env.Logs())
	counts := counter.counts()

	services, _ := found(t, env)
	require.Len(t, services, 256-1-16)
	probed := 0
	for a := pfx.Addr(); pfx.Contains(a); a = a.Next() {
		if a == excludedOne || excludedNet.Contains(a) {
			require.Zero(t, counts[a], "SYNs to excluded %s", a)
			require.NotContains(t, services, a.String()+":80/tcp")
			continue
		}
		require.GreaterOrEqual(t, counts[a], 2, "SYNs to %s (ports 80 and 443)", a)
		probed++
	}
	require.Equal(t, 256-1-16, probed)
	require.Equal(t, 1, env.Results()["out_of_scope"]) // the partly excluded /24
	require.Contains(t, fmt.Sprint(env.Logs()), "partly out of scope")
}

func TestRetriesRecoverDrops(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	l := newLab(t, false)
	// Replies leave the target through a token bucket (1 Mbit/s, about
	// 2300 resets a second) slower than the probes arrive (3000 a second):
	// some of a pass's answers are dropped (sch_netem is
	// not available on every kernel; tbf is).
	if out, err := exec.Command("tc", "-n", l.target, "qdisc", "add", "dev", l.targetIf, "root", "tbf",
		"rate", "1mbit", "burst", "2kb", "latency", "1ms").CombinedOutput(); err != nil {
		t.Skipf("cannot shape the target's replies with tc tbf: %v: %s", err, out)
	}
	open := l.listen(t, 0, 0, 0)
	ports := "1-2000," + strconv.Itoa(open[0]) + "," + strconv.Itoa(open[1]) + "," + strconv.Itoa(open[2])
	for _, tc := range []struct {
		retries  int
		complete bool
	}{
		{retries: 0, complete: false}, // drops happen
		{retries: 10, complete: true}, // and retries make up for them
	} {
		env := &scanner.LocalEnv{}
		err := l.scan(t.Context(), t, &scanfleet.TaskInput{
			Targets: []string{l.targetIP.String()},
			Args:    map[string]any{"ports": ports, "rate": 3000, "retries": tc.retries, "wait": "300ms"},
		}, env)
		require.NoError(t, err, "logs: %v", env.Logs())
		st := status(t, env)
		sent := env.Results()["probes_sent"].(uint64)
		if !tc.complete {
			require.NotZero(t, st["timeout"], "no reply was dropped: the test proves nothing")
			continue
		}
		require.Zero(t, st["timeout"], "status %v, logs %v", st, env.Logs())
		require.Greater(t, sent, uint64(2003), "no probe was sent again")
		services, _ := found(t, env)
		require.Len(t, services, 3)
	}
}

func TestCancelStopsSending(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	l := newLab(t, false)
	counter := l.countSYNs(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	env := &scanner.LocalEnv{OnProgress: func(done, _ int64) {
		if done > 0 {
			cancel()
		}
	}}
	// 65535 probes at 2000 a second would take half a minute.
	err := l.scan(ctx, t, &scanfleet.TaskInput{
		Targets: []string{l.targetIP.String()},
		Args:    map[string]any{"ports": "1-65535", "rate": 2000},
	}, env)
	require.ErrorIs(t, err, context.Canceled)
	sent := env.Results()["probes_sent"].(uint64)
	require.Less(t, sent, uint64(5000), "kept sending after cancel")
	got := counter.counts()[l.targetIP]
	require.LessOrEqual(t, uint64(got), sent)
	require.Less(t, got, 5000)
}

func TestOutOfScopeTargetsAreReported(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	l := newLab(t, false)
	counter := l.countSYNs(t)
	env := &scanner.LocalEnv{}
	err := l.scan(t.Context(), t, &scanfleet.TaskInput{
		Targets: []string{l.targetIP.String()},
		Scope:   &scanfleet.Scope{Include: []string{"192.0.2.0/24"}},
		Args:    map[string]any{"ports": "1-100"},
	}, env)
	require.NoError(t, err)
	require.Empty(t, env.Records())
	require.Equal(t, 1, env.Results()["out_of_scope"])
	require.Contains(t, fmt.Sprint(env.Logs()), "skipped "+l.targetIP.String())
	require.Zero(t, counter.counts()[l.targetIP])
}

// Targets local to the scanning host go out on loopback.
func TestLoopback(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	ns := netnstest.New(t, "sfsyn-lo")
	l := &lab{scanner: ns, target: ns, targetIf: "lo"}
	open := l.listen(t, 0, 0)
	env := &scanner.LocalEnv{}
	err := l.scan(t.Context(), t, &scanfleet.TaskInput{
		Targets: []string{"127.0.0.1"},
		Args:    map[string]any{"ports": strconv.Itoa(open[0]) + "," + strconv.Itoa(open[1]) + ",1-100"},
	}, env)
	require.NoError(t, err, "logs: %v", env.Logs())
	services, _ := found(t, env)
	require.Equal(t, []string{"127.0.0.1:" + strconv.Itoa(open[0]) + "/tcp", "127.0.0.1:" + strconv.Itoa(open[1]) + "/tcp"}, services)
	require.Contains(t, fmt.Sprint(env.Logs()), "raw IP socket")
	require.Zero(t, status(t, env)["timeout"])
}
