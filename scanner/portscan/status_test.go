package portscan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStatusOf(t *testing.T) {
	t.Parallel()
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}
	}
	tests := []struct {
		name  string
		err   error
		want  Status
		local bool
	}{
		{"connected", nil, StatusOpen, false},
		{"refused", opErr(syscall.ECONNREFUSED), StatusClosed, false},
		{"reset", opErr(syscall.ECONNRESET), StatusClosed, false},
		{"host unreachable", opErr(syscall.EHOSTUNREACH), StatusFiltered, false},
		{"network unreachable", opErr(syscall.ENETUNREACH), StatusFiltered, false},
		{"firewall", os.NewSyscallError("connect", syscall.EPERM), StatusFiltered, false},
		{"kernel timeout", os.NewSyscallError("connect", syscall.ETIMEDOUT), StatusTimeout, false},
		{"deadline", opErr(os.ErrDeadlineExceeded), StatusTimeout, false},
		{"context deadline", fmt.Errorf("dial: %w", context.DeadlineExceeded), StatusTimeout, false},
		{"out of descriptors", os.NewSyscallError("socket", syscall.EMFILE), StatusFiltered, true},
		{"out of ports", opErr(syscall.EADDRNOTAVAIL), StatusFiltered, true},
		{"anything else", errors.New("bad luck"), StatusFiltered, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, StatusOf(tt.err))
			require.Contains(t, Statuses, StatusOf(tt.err))
			require.Equal(t, tt.local, isLocal(tt.err))
		})
	}
}
