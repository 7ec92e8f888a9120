package portscan

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSelfConnected connects a socket to its own address, which a scan of
// 127.0.0.1 does by chance when the kernel picks the probed port as the
// local port, and checks that it is told from a real connection.
func TestSelfConnected(t *testing.T) {
	t.Parallel()
	connect := func(bind, to int) int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		t.Cleanup(func() { unix.Close(fd) })
		if bind != 0 {
			require.NoError(t, unix.Bind(fd, &unix.SockaddrInet4{Port: bind, Addr: [4]byte{127, 0, 0, 1}}))
		}
		require.NoError(t, unix.Connect(fd, &unix.SockaddrInet4{Port: to, Addr: [4]byte{127, 0, 0, 1}}))
		return fd
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	require.False(t, selfConnected(connect(0, ln.Addr().(*net.TCPAddr).Port)))

	free, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := free.Addr().(*net.TCPAddr).Port
	require.NoError(t, free.Close())
	require.True(t, selfConnected(connect(port, port)))
}
