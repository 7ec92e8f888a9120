//go:build !linux

package portscan

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// netDialer connects through net.Dialer where there is no epoll.
type netDialer struct{}

var _ dialer = netDialer{}

func newDialer() (dialer, error) { return netDialer{}, nil }

func (netDialer) close() {}

func (netDialer) connector() connector { return netConnector{} }

type netConnector struct{}

func (netConnector) connect(ctx context.Context, ap netip.AddrPort, timeout time.Duration, keep bool) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0) // no TIME_WAIT left behind
	}
	if !keep {
		conn.Close()
		return nil, nil
	}
	return conn, nil
}
