package scanner_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/scannertest"
)

// TestStatusOf maps errors that real connections on loopback produce.
func TestStatusOf(t *testing.T) {
	t.Parallel()
	_, refused := net.Dial("tcp", scannertest.ClosedAddr(t))

	// A server that speaks something other than TLS, and one that hangs up.
	c, err := net.Dial("tcp", scannertest.Banner(t, "HTTP/1.0 400 Bad Request\r\n\r\n"))
	require.NoError(t, err)
	notTLS := tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake()
	c.Close()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	c, err = net.Dial("tcp", silent.Addr().String())
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Millisecond)))
	_, timeout := c.Read(make([]byte, 1))
	c.Close()

	cases := []struct {
		err  error
		want scanner.Status
	}{
		{nil, scanner.StatusSuccess},
		{refused, scanner.StatusConnectionRefused},
		{notTLS, scanner.StatusProtocolError},
		{timeout, scanner.StatusIOTimeout},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), scanner.StatusIOTimeout},
		{fmt.Errorf("read: %w", io.EOF), scanner.StatusConnectionClosed},
		{&net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}, scanner.StatusNameNotFound},
		{fmt.Errorf("x: %w", scanner.ErrOutOfScope), scanner.StatusOutOfScope},
		{scanner.WithStatus(scanner.StatusApplicationError, errors.New("REFUSED")), scanner.StatusApplicationError},
		{errors.New("something else"), scanner.StatusUnknownError},
	}
	for _, c := range cases {
		require.Equal(t, c.want, scanner.StatusOf(c.err), "%v", c.err)
		require.True(t, slices.Contains(scanner.Statuses, scanner.StatusOf(c.err)))
	}
	require.NoError(t, scanner.WithStatus(scanner.StatusIOTimeout, nil))
}

func TestDialerScope(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	defer l.Close()
	m := scanfleet.Scope{Include: []string{"127.0.0.0/8", "localhost"}, Exclude: []string{"127.0.0.2", "blocked.test"}}.MustCompile()
	d := &scanner.Dialer{Matcher: m, Timeout: time.Second}
	_, err = d.DialContext(context.Background(), "tcp", l.Addr().String())
	require.ErrorIs(t, err, scanner.ErrOutOfScope)
	require.Equal(t, scanner.StatusOutOfScope, scanner.StatusOf(err))
	_, err = d.Resolve(context.Background(), "blocked.test:80")
	require.ErrorIs(t, err, scanner.ErrOutOfScope, "an excluded name is never resolved")
	addrs, err := d.Resolve(context.Background(), "127.0.0.1:80")
	require.NoError(t, err)
	require.Len(t, addrs, 1)
}

func TestEachStopsOnCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got []int
	scanner.Each(ctx, 2, slices.Values([]int{1, 2, 3, 4, 5, 6, 7, 8}), func(i int) {
		mu.Lock()
		got = append(got, i)
		mu.Unlock()
		if i == 3 {
			cancel()
		}
	})
	require.Less(t, len(got), 8)
	cancel()
}
