//go:build linux

package portscan_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strconv"
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

// server is a TCP listener on a loopback address that hands each
// connection to a handler and counts what it accepted.
type server struct {
	ln      net.Listener
	port    uint16
	accepts atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]bool
	times []time.Time // of each accept
	wg    sync.WaitGroup
}

// serve listens on addr ("127.0.0.21:0") until the test ends. handle may
// be nil: the connection is then held open, silent, until the peer goes.
func serve(t testing.TB, addr string, handle func(net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	return serveOn(t, ln, handle)
}

func serveOn(t testing.TB, ln net.Listener, handle func(net.Conn)) *server {
	s := &server{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), conns: map[net.Conn]bool{}}
	if handle == nil {
		handle = func(c net.Conn) { c.Read(make([]byte, 1)) }
	}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.mu.Lock()
			s.conns[c] = true
			s.times = append(s.times, established(c))
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// established returns when the kernel completed c's handshake, which
// does not depend on how soon the accept loop got to run.
func established(c net.Conn) time.Time {
	now := time.Now()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return now
	}
	at := now
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			at = now.Add(-time.Duration(info.Last_ack_recv) * time.Millisecond)
		}
	})
	return at
}

// acceptTimes returns when each connection the server accepted was
// established.
func (s *server) acceptTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.times...)
}

// greeter writes a greeting, then holds the connection until the peer
// goes.
func greeter(greeting string) func(net.Conn) {
	return func(c net.Conn) {
		c.Write([]byte(greeting))
		c.Read(make([]byte, 1))
	}
}

// scan runs one portscan task with a fresh LocalEnv.
func scan(t *testing.T, ctx context.Context, in *scanfleet.TaskInput) (*scanner.LocalEnv, error) {
	t.Helper()
	ex, err := portscan.New(portscan.Config{})
	require.NoError(t, err)
	env := &scanner.LocalEnv{}
	return env, ex.Run(ctx, in, env)
}

// input is a task scanning targets within scope.
func input(targets, scope []string, args map[string]any) *scanfleet.TaskInput {
	in := &scanfleet.TaskInput{TaskID: scanfleet.NewTaskID(), Type: portscan.TaskTypeName, Workspace: "acme", Targets: targets, Args: args}
	if scope != nil {
		in.Scope = &scanfleet.Scope{Include: scope}
	}
	return in
}

// services returns the service records by "ip:port".
func services(env *scanner.LocalEnv) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range env.Records() {
		if r.Kind == scanfleet.KindService {
			out[net.JoinHostPort(r.Data["ip"].(string), strconv.Itoa(int(r.Data["port"].(int64))))] = r.Data
		}
	}
	return out
}

// openPorts returns the ports of addr with an open service record.
func openPorts(env *scanner.LocalEnv, addr string) map[uint16]bool {
	out := map[uint16]bool{}
	for _, r := range env.Records() {
		if r.Kind == scanfleet.KindService && r.Data["ip"] == addr && r.Data["state"] == "open" {
			out[uint16(r.Data["port"].(int64))] = true
		}
	}
	return out
}

func counts(t *testing.T, env *scanner.LocalEnv) map[string]int64 {
	t.Helper()
	c, ok := env.Results()["counts"].(map[string]int64)
	require.True(t, ok, "counts: %#v", env.Results()["counts"])
	return c
}

// listening returns the TCP ports the kernel has listening sockets for
// that accept connections to addr: bound to it or to the wildcard. It
// tells a port another program opened from a port the scanner made up.
func listening(t *testing.T, addr netip.Addr) map[uint16]bool {
	t.Helper()
	out := map[uint16]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			hexAddr, hexPort, _ := strings.Cut(fields[1], ":")
			port, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				continue
			}
			b, err := hex.DecodeString(hexAddr)
			if err != nil {
				continue
			}
			// /proc shows addresses as native-endian 32-bit words.
			for i := 0; i+4 <= len(b); i += 4 {
				b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
			}
			a, ok := netip.AddrFromSlice(b)
			if ok && (a.Unmap() == addr || a.IsUnspecified()) {
				out[uint16(port)] = true
			}
		}
		f.Close()
	}
	return out
}

// selfSigned returns a TLS certificate for cn.
func selfSigned(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// closedPort returns a port of addr that nothing listens on: one a
// listener just had. Another program could take it in between, which the
// ephemeral range makes unlikely.
func closedPort(t *testing.T, addr string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	require.NoError(t, err)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close())
	return port
}
