package synscan

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A worker without CAP_NET_RAW gets an error that says what to do.
func TestPrivilegeError(t *testing.T) {
	t.Parallel()
	err := privilegeError("open AF_PACKET socket", fmt.Errorf("socket: %w", unix.EPERM))
	require.ErrorIs(t, err, errPrivilege)
	require.Contains(t, err.Error(), "CAP_NET_RAW")
	require.NotErrorIs(t, privilegeError("x", unix.EINVAL), errPrivilege)
}
