//go:build linux

package portscan_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/portscan"
)

func TestTaskType(t *testing.T) {
	t.Parallel()
	tt := portscan.TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, scanfleet.PoolExternal, tt.Pool())
	args, err := tt.ValidateArgs(map[string]any{})
	require.NoError(t, err)
	top100, err := scanfleet.ParsePortList("top-100")
	require.NoError(t, err)
	require.Equal(t, scanfleet.FormatPortList(top100), args["ports"], "top-100 by default, stored expanded")
	require.Equal(t, true, args["banners"])

	ex, err := portscan.New(portscan.Config{})
	require.NoError(t, err)
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"ports": "top-5000"}, `args.ports: "top-5000" is not a named port set: top-N takes N from 1 to 1000`},
		{map[string]any{"rate": float64(-1)}, "args.rate: -1 is less than the minimum 0"},
		{map[string]any{"concurrency": float64(0)}, "args.concurrency: 0 is less than the minimum 1"},
		{map[string]any{"timeout": "0s"}, "args.timeout: must be more than 0s"},
		{map[string]any{"bogus": true}, "args.bogus: unknown argument for task type portscan"},
	} {
		err := ex.Run(t.Context(), input([]string{"127.0.0.1"}, nil, tc.args), &scanner.LocalEnv{})
		require.EqualError(t, err, tc.want)
	}
	_, err = portscan.New(portscan.Config{MaxConcurrency: -1})
	require.EqualError(t, err, "portscan: MaxConcurrency: -1 is negative")
}

// TestOpenAmongClosed scans a loopback address on which the test opened a
// few ports: it must find those, and every other port it calls open must
// be one the kernel lists as listening (another program's).
func TestOpenAmongClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		addr  string
		ports func(open []uint16) string
	}{
		{"port list", "127.0.0.13", func(open []uint16) string {
			var parts []string
			for _, p := range open {
				parts = append(parts, fmt.Sprintf("%d-%d", p-5, p+5))
			}
			return strings.Join(parts, ",")
		}},
		{"all", "127.0.0.14", func([]uint16) string { return "all" }},
		{"ipv6", "::1", func(open []uint16) string {
			var parts []string
			for _, p := range open {
				parts = append(parts, fmt.Sprintf("%d-%d", p-2, p+2))
			}
			return strings.Join(parts, ",")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := netip.MustParseAddr(tt.addr)
			var open []uint16
			for range 3 {
				open = append(open, serve(t, net.JoinHostPort(tt.addr, "0"), nil).port)
			}
			before := listening(t, addr)
			env, err := scan(t, t.Context(), input([]string{tt.addr}, nil, map[string]any{"ports": tt.ports(open), "banners": false}))
			require.NoError(t, err)
			after := listening(t, addr)

			found := openPorts(env, tt.addr)
			for _, p := range open {
				require.True(t, found[p], "port %d is open", p)
			}
			for p := range found {
				require.True(t, before[p] || after[p], "port %d was reported open, but nothing listens on it", p)
			}
			ports, err := scanfleet.ParsePortList(tt.ports(open))
			require.NoError(t, err)
			c := counts(t, env)
			require.Equal(t, int64(len(found)), c["open"])
			require.Equal(t, int64(len(ports)-len(found)), c["closed"], "every other port is closed")
			require.Zero(t, c["timeout"]+c["filtered"])
			require.Equal(t, int64(len(ports)), env.Results()["probes"])
			done, total := env.LastProgress()
			require.Equal(t, int64(len(ports)), total)
			require.Equal(t, total, done)

			hosts := 0
			for _, r := range env.Records() {
				if r.Kind == scanfleet.KindHost {
					hosts++
					require.Equal(t, tt.addr, r.Data["ip"])
					require.Equal(t, "up", r.Data["state"])
				}
			}
			require.Equal(t, 1, hosts, "one host record")
			require.Equal(t, 1, env.Results()["hosts_up"])
		})
	}
}

// TestBanners checks the service guess against listeners that speak (or
// mimic) each protocol.
func TestBanners(t *testing.T) {
	t.Parallel()
	const addr = "127.0.0.21"
	cert := selfSigned(t, "portscan.test")

	httpLn, err := net.Listen("tcp", addr+":0")
	require.NoError(t, err)
	httpsLn, err := net.Listen("tcp", addr+":0")
	require.NoError(t, err)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "test-httpd/1.0")
		w.WriteHeader(http.StatusTeapot)
	})
	for _, ln := range []net.Listener{httpLn, tls.NewListener(httpsLn, &tls.Config{Certificates: []tls.Certificate{cert}})} {
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-done })
	}

	mysql := []byte{0x22, 0, 0, 0, 10}
	mysql = append(mysql, "8.0.36-test\x00"...)
	mysql = append(mysql, make([]byte, 0x22-13)...)
	tlsOnly := func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() == nil {
			tc.Read(make([]byte, 1)) // says nothing back to HTTP
		}
	}
	redis := func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		if line == "PING\r\n" {
			c.Write([]byte("+PONG\r\n"))
			c.Read(make([]byte, 1))
		}
	}

	tests := []struct {
		name       string
		port       uint16
		service    string
		banner     string // a part of it
		tls        bool
		cn         string
		wantBanner bool
	}{
		{"ssh", serve(t, addr+":0", greeter("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")).port, "ssh", "SSH-2.0-OpenSSH_9.2p1 Debian-2", false, "", true},
		{"smtp", serve(t, addr+":0", greeter("220 mail.example.test ESMTP Postfix\r\n")).port, "smtp", "220 mail.example.test ESMTP Postfix", false, "", true},
		{"ftp", serve(t, addr+":0", greeter("220 (vsFTPd 3.0.3)\r\n")).port, "ftp", "vsFTPd 3.0.3", false, "", true},
		{"pop3", serve(t, addr+":0", greeter("+OK Dovecot ready.\r\n")).port, "pop3", "+OK Dovecot ready.", false, "", true},
		{"imap", serve(t, addr+":0", greeter("* OK [CAPABILITY IMAP4rev1] ready\r\n")).port, "imap", "* OK", false, "", true},
		{"mysql", serve(t, addr+":0", greeter(string(mysql))).port, "mysql", "8.0.36-test", false, "", true},
		{"redis", serve(t, addr+":0", redis).port, "redis", "+PONG", false, "", true},
		{"http", uint16(httpLn.Addr().(*net.TCPAddr).Port), "http", `HTTP/1.0 418 I'm a teapot\r\nServer: test-httpd/1.0`, false, "", true},
		{"https", uint16(httpsLn.Addr().(*net.TCPAddr).Port), "https", "Server: test-httpd/1.0", true, "portscan.test", true},
		{"tls", serve(t, addr+":0", tlsOnly).port, "tls", "", true, "portscan.test", false},
		{"silent", serve(t, addr+":0", nil).port, "", "", false, "", false},
		{"binary greeting", serve(t, addr+":0", greeter("\x00\x01\xfe\xffhello\r\n")).port, "", "", false, "", true},
	}
	var ports []string
	for _, tt := range tests {
		ports = append(ports, fmt.Sprint(tt.port))
	}
	env, err := scan(t, t.Context(), input([]string{addr}, nil, map[string]any{
		"ports": strings.Join(ports, ","), "banner_timeout": "1s",
	}))
	require.NoError(t, err)
	got := services(env)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := got[fmt.Sprintf("%s:%d", addr, tt.port)]
			require.NotNil(t, rec, "no record for port %d", tt.port)
			require.Equal(t, "open", rec["state"])
			require.Equal(t, "tcp", rec["proto"])
			require.Equal(t, tt.service, rec["name"])
			require.Equal(t, tt.tls, rec["tls"])
			banner := rec["banner"].(string)
			require.Contains(t, banner, tt.banner)
			require.Equal(t, tt.wantBanner, banner != "", "banner %q", banner)
			require.LessOrEqual(t, len(banner), 256)
			for _, c := range banner {
				require.True(t, c >= 0x20 && c < 0x7f, "banner %q is printable ASCII", banner)
			}
			if tt.cn != "" {
				require.Equal(t, tt.cn, rec["tls_cn"])
			} else {
				require.NotContains(t, rec, "tls_cn")
			}
		})
	}
	require.Equal(t, `\x00\x01\xfe\xffhello`, got[fmt.Sprintf("%s:%d", addr, tests[len(tests)-1].port)]["banner"])
}

// TestOutOfScopeNeverDialed listens on the same port of an in-scope and
// an excluded address: the excluded one must see no connection at all.
func TestOutOfScopeNeverDialed(t *testing.T) {
	t.Parallel()
	// A greeting makes the scanner wait for it, so a connection is surely
	// accepted (and counted) before the scanner closes it.
	greet := greeter("SSH-2.0-test\r\n")
	var in, out *server
	for range 20 {
		out = serve(t, "127.0.0.32:0", greet)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.31:%d", out.port))
		if err == nil {
			in = serveOn(t, ln, greet)
			break
		}
	}
	require.NotNil(t, in, "no port free on both addresses")
	task := input([]string{"127.0.0.31", "127.0.0.32", "127.0.0.30/31", "127.0.0.32/30", "10.1.2.3"}, nil,
		map[string]any{"ports": fmt.Sprint(out.port)})
	task.Scope = &scanfleet.Scope{Include: []string{"127.0.0.30/31", "127.0.0.32/30", "10.1.2.3"}, Exclude: []string{"127.0.0.32", "10.0.0.0/8"}}
	env, err := scan(t, t.Context(), task)
	require.NoError(t, err)

	require.Equal(t, int64(1), in.accepts.Load(), "the in-scope address was scanned")
	require.Zero(t, out.accepts.Load(), "the excluded address was dialed")
	require.Equal(t, map[uint16]bool{out.port: true}, openPorts(env, "127.0.0.31"))
	require.Empty(t, openPorts(env, "127.0.0.32"))
	skipped := env.Results()["out_of_scope"].([]scanner.Skipped)
	targets := map[string]string{}
	for _, s := range skipped {
		targets[s.Target] = s.Reason
	}
	require.Contains(t, targets, "127.0.0.32")
	require.Contains(t, targets, "10.1.2.3")
	require.Contains(t, targets["127.0.0.32/30"], "partly out of scope")
	require.Equal(t, len(skipped), env.Results()["out_of_scope_count"])
	require.Equal(t, int64(len(skipped)), counts(t, env)["out-of-scope"])
	require.True(t, slices.ContainsFunc(env.Logs(), func(l string) bool {
		return strings.Contains(l, "out of scope") && strings.Contains(l, "10.1.2.3")
	}), "logs: %q", env.Logs())
	// 127.0.0.30, .31, .33, .34, .35: the /30 without .32.
	require.Equal(t, int64(5), env.Results()["probes"])
}

// liveConns counts a server's connections that are still open, as the
// kernel sees them: a connection the scanner closed is gone even when its
// handler has not noticed yet.
type liveConns struct {
	mu    sync.Mutex
	conns []net.Conn
	max   int
}

// handle keeps c and, once the kernel has surely processed the resets
// the scanner sent before it connected, counts the kept connections
// still alive. The scanner holds each connection for the banner timeout,
// far longer than the wait.
func (l *liveConns) handle(c net.Conn) {
	l.mu.Lock()
	l.conns = append(l.conns, c)
	l.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	l.mu.Lock()
	alive := l.conns[:0]
	for _, o := range l.conns {
		if isAlive(o) {
			alive = append(alive, o)
		}
	}
	l.conns = alive
	l.max = max(l.max, len(alive))
	l.mu.Unlock()
	io.Copy(io.Discard, c) // until the scanner hangs up
}

func (l *liveConns) maxSeen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max
}

// isAlive asks the kernel whether c is still established: a connection
// the scanner reset is closed at once, before its handler notices.
func isAlive(c net.Conn) bool {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		alive = err == nil && info.State == unix.BPF_TCP_ESTABLISHED
	})
	return alive
}

// TestPerHostConcurrency has silent listeners hold every connection until
// the banner grab gives up, and counts how many of one host's connections
// are open at once.
func TestPerHostConcurrency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		addrs []string
		limit int
	}{
		{"one host", []string{"127.0.0.41"}, 3},
		{"two hosts", []string{"127.0.0.42", "127.0.0.43"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			live := map[string]*liveConns{}
			for _, a := range tt.addrs {
				live[a] = &liveConns{}
			}
			var ports []string
			for range 8 {
				s := serve(t, tt.addrs[0]+":0", live[tt.addrs[0]].handle)
				ports = append(ports, fmt.Sprint(s.port))
			}
			// The other hosts listen on the same ports.
			for _, a := range tt.addrs[1:] {
				for _, p := range ports {
					ln, err := net.Listen("tcp", a+":"+p)
					if err != nil {
						t.Skipf("port %s is taken on %s: %v", p, a, err)
					}
					serveOn(t, ln, live[a].handle)
				}
			}
			env, err := scan(t, t.Context(), input(tt.addrs, nil, map[string]any{
				"ports": strings.Join(ports, ","), "per_host_concurrency": tt.limit, "concurrency": 100, "banner_timeout": "100ms",
			}))
			require.NoError(t, err)
			for _, a := range tt.addrs {
				require.Len(t, openPorts(env, a), len(ports))
				require.LessOrEqual(t, live[a].maxSeen(), tt.limit, "%s had more connections at once than the limit", a)
				require.GreaterOrEqual(t, live[a].maxSeen(), 2, "%s: the probes did not run in parallel at all", a)
			}
		})
	}
}

// TestRate counts when each connection arrives: n attempts at r per second
// cannot span less than (n-1)/r, whatever the machine's speed.
func TestRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		addrs []string
		args  map[string]any
		rate  float64 // per address
	}{
		{"global", []string{"127.0.0.51"}, map[string]any{"rate": 40}, 40},
		{"global over two hosts", []string{"127.0.0.52", "127.0.0.53"}, map[string]any{"rate": 40}, 20},
		{"per host", []string{"127.0.0.54"}, map[string]any{"per_host_rate": 40}, 40},
		{"per host over two hosts", []string{"127.0.0.55", "127.0.0.56"}, map[string]any{"per_host_rate": 20}, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			servers := map[string][]*server{}
			var ports []string
			// A greeting makes the scanner wait for it, so each connection
			// is surely accepted before the scanner closes it.
			greet := greeter("SSH-2.0-test\r\n")
			for range 10 {
				s := serve(t, tt.addrs[0]+":0", greet)
				servers[tt.addrs[0]] = append(servers[tt.addrs[0]], s)
				ports = append(ports, fmt.Sprint(s.port))
			}
			for _, a := range tt.addrs[1:] {
				for _, p := range ports {
					ln, err := net.Listen("tcp", a+":"+p)
					if err != nil {
						t.Skipf("port %s is taken on %s: %v", p, a, err)
					}
					servers[a] = append(servers[a], serveOn(t, ln, greet))
				}
			}
			args := map[string]any{"ports": strings.Join(ports, ",")}
			for k, v := range tt.args {
				args[k] = v
			}
			env, err := scan(t, t.Context(), input(tt.addrs, nil, args))
			require.NoError(t, err)
			require.Equal(t, int64(len(ports)*len(tt.addrs)), env.Results()["attempts"])
			for _, a := range tt.addrs {
				var times []time.Time
				for _, s := range servers[a] {
					require.Equal(t, int64(1), s.accepts.Load())
					times = append(times, s.acceptTimes()...)
				}
				slices.SortFunc(times, func(x, y time.Time) int { return x.Compare(y) })
				span := times[len(times)-1].Sub(times[0])
				least := time.Duration(float64(len(times)-1) / tt.rate * float64(time.Second))
				// A generous lower bound only: a loaded machine makes the
				// scan slower, never faster.
				require.GreaterOrEqual(t, span, least*8/10, "%s: %d connections in %s", a, len(times), span)
			}
		})
	}
}

// TestTimeout uses a listener whose accept queue is full: the kernel drops
// further SYNs, so connects time out, once more per retry.
func TestTimeout(t *testing.T) {
	t.Parallel()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 61}}))
	require.NoError(t, unix.Listen(fd, 0))
	sa, err := unix.Getsockname(fd)
	require.NoError(t, err)
	full := sa.(*unix.SockaddrInet4).Port
	filler, err := net.Dial("tcp", fmt.Sprintf("127.0.0.61:%d", full)) // fills the queue of one
	require.NoError(t, err)
	t.Cleanup(func() { filler.Close() })
	closed := closedPort(t, "127.0.0.61")
	open := serve(t, "127.0.0.61:0", nil).port

	env, err := scan(t, t.Context(), input([]string{"127.0.0.61"}, nil, map[string]any{
		"ports": fmt.Sprintf("%d,%d,%d", full, closed, open), "timeout": "200ms", "retries": 2,
		"banners": false, "emit_closed": true,
	}))
	require.NoError(t, err)
	c := counts(t, env)
	require.Equal(t, int64(1), c["timeout"])
	require.Equal(t, int64(1), c["closed"])
	require.Equal(t, int64(1), c["open"])
	require.Equal(t, int64(3+2), env.Results()["attempts"], "the port that timed out was tried 1+2 times")
	got := services(env)
	require.Equal(t, "timeout", got[fmt.Sprintf("127.0.0.61:%d", full)]["state"])
	require.Equal(t, "closed", got[fmt.Sprintf("127.0.0.61:%d", closed)]["state"])
	require.Equal(t, "open", got[fmt.Sprintf("127.0.0.61:%d", open)]["state"])
}

// TestCancel stops scans that would run for minutes, at each place a
// probe can wait.
func TestCancel(t *testing.T) {
	t.Parallel()
	silent := serve(t, "127.0.0.71:0", nil)
	tests := []struct {
		name string
		args map[string]any
	}{
		{"waiting for the rate", map[string]any{"ports": "all", "rate": 2}},
		{"waiting for a banner", map[string]any{"ports": fmt.Sprint(silent.port), "banner_timeout": "10m", "emit_closed": true}},
		{"scanning", map[string]any{"ports": "all", "banners": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ex, err := portscan.New(portscan.Config{})
			require.NoError(t, err)
			env := &scanner.LocalEnv{}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- ex.Run(ctx, input([]string{"127.0.0.71", "127.0.0.72/31"}, nil, tt.args), env) }()
			time.Sleep(100 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				require.ErrorIs(t, err, context.Canceled)
				if done, total := env.LastProgress(); total > 3 {
					require.Less(t, done, total, "the scan was cut short")
				}
			case <-time.After(time.Minute):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
}

// TestNames scans a name: its address is scanned and the records carry
// the name.
func TestNames(t *testing.T) {
	t.Parallel()
	s := serve(t, "127.0.0.1:0", greeter("SSH-2.0-test\r\n"))
	env, err := scan(t, t.Context(), input([]string{"localhost"}, []string{"localhost", "127.0.0.1"}, map[string]any{
		"ports": fmt.Sprint(s.port),
	}))
	require.NoError(t, err)
	rec := services(env)[fmt.Sprintf("127.0.0.1:%d", s.port)]
	require.NotNil(t, rec)
	require.Equal(t, []any{"localhost"}, rec["hostnames"])
	require.Equal(t, "ssh", rec["name"])
	for _, r := range env.Records() {
		if r.Kind == scanfleet.KindHost {
			require.Equal(t, []any{"localhost"}, r.Data["hostnames"])
		}
	}
	require.Equal(t, int64(1), s.accepts.Load())
}

// TestProgress reports progress as the probes finish, never going back.
func TestProgress(t *testing.T) {
	t.Parallel()
	ex, err := portscan.New(portscan.Config{ProgressEvery: 100})
	require.NoError(t, err)
	var mu sync.Mutex
	var seen []int64
	env := &scanner.LocalEnv{OnProgress: func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, int64(2000), total)
		seen = append(seen, done)
	}}
	var emitted atomic.Int64
	env.OnRecord = func(scanfleet.Record) error { emitted.Add(1); return nil }
	require.NoError(t, ex.Run(t.Context(), input([]string{"127.0.0.81"}, nil, map[string]any{"ports": "1-2000", "banners": false}), env))
	mu.Lock()
	defer mu.Unlock()
	require.True(t, slices.IsSorted(seen), "progress went back: %v", seen)
	require.GreaterOrEqual(t, len(seen), 5)
	require.Equal(t, int64(2000), seen[len(seen)-1])
}
