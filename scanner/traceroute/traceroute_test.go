package traceroute_test

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/internal/netnstest"
	"github.com/scanfleet/scanfleet/scanner/scannertest"
	"github.com/scanfleet/scanfleet/scanner/traceroute"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chain is scanner — router — target, three namespaces joined by two veth
// pairs; the router forwards. No namespace has a default route.
type chain struct {
	scanner, router, target string
}

const (
	scannerIP  = "10.77.1.1"
	routerNear = "10.77.1.2" // the router's address on the scanner's side
	routerFar  = "10.77.2.1"
	targetIP   = "10.77.2.2"
)

func newChain(t *testing.T) chain {
	t.Helper()
	c := chain{
		scanner: netnstest.New(t, "sftr"),
		router:  netnstest.New(t, "sftr"),
		target:  netnstest.New(t, "sftr"),
	}
	netnstest.Veth(t, c.scanner, "s0", scannerIP+"/24", c.router, "r0", routerNear+"/24")
	netnstest.Veth(t, c.router, "r1", routerFar+"/24", c.target, "t0", targetIP+"/24")
	netnstest.IP(t, "-n", c.scanner, "route", "add", "10.77.2.0/24", "via", routerNear)
	netnstest.IP(t, "-n", c.target, "route", "add", "10.77.1.0/24", "via", routerFar)
	netnstest.Sysctl(t, c.router, "net.ipv4.ip_forward", "1")
	// Linux answers one ICMP error per second per peer after a burst of
	// six; a trace sends all TTLs at once.
	netnstest.Sysctl(t, c.router, "net.ipv4.icmp_ratelimit", "0")
	netnstest.Sysctl(t, c.target, "net.ipv4.icmp_ratelimit", "0")
	return c
}

// run runs a traceroute task from the scanner namespace.
func run(t *testing.T, ns string, in *scanfleet.TaskInput) (*scanner.LocalEnv, error) {
	t.Helper()
	env := &scanner.LocalEnv{}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := netnstest.Do(ns, func() error {
		return traceroute.New(traceroute.Config{Resolver: hosts}).Run(ctx, in, env)
	})
	return env, err
}

// staticHosts resolves names from a map, as /etc/hosts would.
type staticHosts map[string][]netip.Addr

func (h staticHosts) LookupNetIP(_ context.Context, _, name string) ([]netip.Addr, error) {
	if a, ok := h[strings.TrimSuffix(name, ".")]; ok { // scanners ask for absolute names
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

var hosts = staticHosts{"target.test": {netip.MustParseAddr(targetIP)}}

// ipInReceives returns the IPv4 packets namespace ns has received.
func ipInReceives(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").Output()
	require.NoError(t, err)
	var header []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if !strings.HasPrefix(line, "Ip: ") {
			continue
		}
		f := strings.Fields(line)
		if header == nil {
			header = f
			continue
		}
		for i, name := range header {
			if name == "InReceives" {
				n, err := strconv.Atoi(f[i])
				require.NoError(t, err)
				return n
			}
		}
	}
	t.Fatalf("no Ip InReceives in /proc/net/snmp of %s", ns)
	return 0
}

func TestTraceThroughRouter(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	for _, tc := range []struct {
		method string
		args   map[string]any
		answer string
		listen bool
	}{
		{method: "icmp", answer: "echo-reply"},
		{method: "udp", answer: "port-unreachable"},
		{method: "tcp", args: map[string]any{"port": float64(8080)}, answer: "syn-ack", listen: true},
		{method: "tcp", args: map[string]any{"port": float64(8081)}, answer: "reset"},
	} {
		t.Run(tc.method+"-"+tc.answer, func(t *testing.T) {
			t.Parallel()
			c := newChain(t)
			if tc.listen {
				var ln net.Listener
				require.NoError(t, netnstest.Do(c.target, func() (err error) {
					ln, err = net.Listen("tcp4", targetIP+":8080")
					return err
				}))
				t.Cleanup(func() { ln.Close() })
			}
			args := map[string]any{"method": tc.method, "timeout": "1s", "max_hops": float64(8)}
			for k, v := range tc.args {
				args[k] = v
			}
			env, err := run(t, c.scanner, &scanfleet.TaskInput{Targets: []string{targetIP}, Args: args})
			require.NoError(t, err, "logs: %v", env.Logs())

			recs := env.Records()
			require.Len(t, recs, 1, "logs: %v", env.Logs())
			d := recs[0].Data
			require.Equal(t, "host", d["kind"])
			require.Equal(t, targetIP, d["ip"])
			require.Equal(t, "up", d["state"])
			hops, ok := d["traceroute"].([]any)
			require.True(t, ok, "traceroute field: %#v", d["traceroute"])
			require.Len(t, hops, 2, "hops: %v", hops)

			first := hops[0].(map[string]any)
			require.Equal(t, 1, first["ttl"])
			require.Equal(t, routerNear, first["ip"])
			require.Equal(t, "time-exceeded", first["status"])
			require.Len(t, first["rtts_ms"], 3, "three queries, three answers")

			second := hops[1].(map[string]any)
			require.Equal(t, 2, second["ttl"])
			require.Equal(t, targetIP, second["ip"])
			require.Equal(t, "reply", second["status"])
			require.Equal(t, tc.answer, second["answer"])
			require.Len(t, second["rtts_ms"], 3)

			res := env.Results()
			require.EqualValues(t, 1, res["up"])
			require.EqualValues(t, 0, res["out_of_scope"])
			require.Equal(t, tc.method, res["method"])
			// Round 1 probes TTLs 1 to 8; rounds 2 and 3 stop at the
			// destination's TTL 2.
			require.EqualValues(t, 8+2+2, res["probes"])
		})
	}
}

func TestTraceEnds(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	for _, tc := range []struct {
		route  string // the second router's route to 10.77.3.0/24
		status string // of hop 2
		answer string
		hops   int
	}{
		// Dropped without a word: hops 2 to 4 time out, and trailing
		// timeouts are left out.
		{route: "blackhole", hops: 1},
		// Refused by the second router: the path ends there, at hop 2.
		{route: "prohibit", status: "unreachable", answer: "admin-prohibited", hops: 2},
	} {
		t.Run(tc.route, func(t *testing.T) {
			t.Parallel()
			c := newChain(t)
			// The target namespace is the second router here. (Linux
			// looks the route up before it checks the TTL, so a
			// blackhole on the first router would swallow hop 1 too.)
			netnstest.IP(t, "-n", c.scanner, "route", "add", "10.77.3.0/24", "via", routerNear)
			netnstest.IP(t, "-n", c.router, "route", "add", "10.77.3.0/24", "via", targetIP)
			netnstest.Sysctl(t, c.target, "net.ipv4.ip_forward", "1")
			netnstest.IP(t, "-n", c.target, "route", "add", tc.route, "10.77.3.0/24")
			env, err := run(t, c.scanner, &scanfleet.TaskInput{
				Targets: []string{"10.77.3.5"},
				Args:    map[string]any{"timeout": "300ms", "queries": float64(1), "max_hops": float64(4)},
			})
			require.NoError(t, err)
			recs := env.Records()
			require.Len(t, recs, 1)
			require.Equal(t, "down", recs[0].Data["state"])
			hops := recs[0].Data["traceroute"].([]any)
			require.Len(t, hops, tc.hops, "hops: %v", hops)
			require.Equal(t, routerNear, hops[0].(map[string]any)["ip"])
			require.Equal(t, "time-exceeded", hops[0].(map[string]any)["status"])
			if tc.hops > 1 {
				h := hops[1].(map[string]any)
				require.Equal(t, targetIP, h["ip"])
				require.Equal(t, tc.status, h["status"])
				require.Equal(t, tc.answer, h["answer"])
			}
			require.EqualValues(t, 1, env.Results()["down"])
			require.EqualValues(t, 0, env.Results()["up"])
		})
	}
}

func TestTraceFirstTTL(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	c := newChain(t)
	env, err := run(t, c.scanner, &scanfleet.TaskInput{
		Targets: []string{"target.test"},
		Scope:   &scanfleet.Scope{Include: []string{"10.77.2.0/24"}},
		Args:    map[string]any{"first_ttl": float64(2), "queries": float64(1), "timeout": "1s"},
	})
	require.NoError(t, err)
	recs := env.Records()
	require.Len(t, recs, 1)
	require.Equal(t, []any{"target.test"}, recs[0].Data["hostnames"])
	hops := recs[0].Data["traceroute"].([]any)
	require.Len(t, hops, 1)
	require.Equal(t, targetIP, hops[0].(map[string]any)["ip"])
	require.Len(t, hops[0].(map[string]any)["rtts_ms"], 1)
	// What TestOutOfScopeNeverProbed counts does count probes.
	require.Positive(t, ipInReceives(t, c.target))
}

func TestOutOfScopeNeverProbed(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	c := newChain(t)
	before := ipInReceives(t, c.router)
	env, err := run(t, c.scanner, &scanfleet.TaskInput{
		Targets: []string{targetIP, "10.77.2.0/30"},
		Scope:   &scanfleet.Scope{Include: []string{"10.77.1.0/24"}},
		Args:    map[string]any{"timeout": "200ms"},
	})
	require.NoError(t, err)
	require.Empty(t, env.Records())
	require.EqualValues(t, 2, env.Results()["out_of_scope"])
	require.Contains(t, strings.Join(env.Logs(), "\n"), "out of scope: "+targetIP)
	// Nothing reached the router, let alone the target.
	require.Equal(t, before, ipInReceives(t, c.router))
	require.Equal(t, 0, ipInReceives(t, c.target))
}

func TestExcludedAddressOfPrefixNeverProbed(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	c := newChain(t)
	// 10.77.2.2/31 is .2, the target, and .3, excluded.
	env, err := run(t, c.scanner, &scanfleet.TaskInput{
		Targets: []string{"10.77.2.2/31"},
		Exclude: []string{"10.77.2.3"},
		Args:    map[string]any{"timeout": "500ms", "queries": float64(1), "max_hops": float64(3)},
	})
	require.NoError(t, err)
	recs := env.Records()
	require.Len(t, recs, 1)
	require.Equal(t, targetIP, recs[0].Data["ip"])
	require.EqualValues(t, 1, env.Results()["out_of_scope"])
}

func TestInvalidArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"method": "sctp"}, "args.method"},
		{map[string]any{"first_ttl": float64(9), "max_hops": float64(3)}, "args.first_ttl"},
		{map[string]any{"queries": float64(0)}, "args.queries"},
		{map[string]any{"timeout": "0s"}, "args.timeout"},
		{map[string]any{"port": float64(70000)}, "args.port"},
	} {
		err := traceroute.New(traceroute.Config{}).Run(t.Context(), &scanfleet.TaskInput{Targets: []string{"127.0.0.1"}, Args: tc.args}, &scanner.LocalEnv{})
		require.Error(t, err)
		require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err))
		require.Contains(t, scanfleet.ErrorMessage(err), tc.want)
	}
}

func TestTaskType(t *testing.T) {
	t.Parallel()
	tt := traceroute.New(traceroute.Config{}).TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, "traceroute", tt.Name)
	require.Equal(t, scanfleet.PoolBaremetal, tt.Pool())
}

func TestCancel(t *testing.T) {
	t.Parallel()
	netnstest.Require(t)
	c := newChain(t)
	// The router drops every probe without a word (the route lookup
	// comes before the TTL check): each waits its full timeout.
	netnstest.IP(t, "-n", c.scanner, "route", "add", "10.77.3.0/24", "via", routerNear)
	netnstest.IP(t, "-n", c.router, "route", "add", "blackhole", "10.77.3.0/24")
	ctx, cancel := context.WithCancel(t.Context())
	env := &scanner.LocalEnv{}
	done := make(chan error, 1)
	go func() {
		done <- netnstest.Do(c.scanner, func() error {
			return traceroute.New(traceroute.Config{}).Run(ctx, &scanfleet.TaskInput{
				Targets: []string{"10.77.3.5"},
				Args:    map[string]any{"timeout": "1m"},
			}, env)
		})
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	scannertest.RequireCanceled(t, done)
	require.Empty(t, env.Records(), "a cancelled trace is not recorded")
}
