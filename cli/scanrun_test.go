package cli_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScanCommand runs "scanfleet scan" against a loopback listener, on
// the server (a task, waited for) and in-process (--local).
func TestScanCommand(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	ports := fmt.Sprintf("%d,%d", port, port+1)

	s := startServer(t, "--data-dir", t.TempDir())
	s.cli(t, "", "workspace", "create", "lab", "--include", "127.0.0.1")
	out := s.cli(t, "", "scan", "127.0.0.1", "-p", ports, "--workspace", "lab", "--wait", "-o", "jsonl")
	require.Contains(t, out, fmt.Sprintf(`"port":%d`, port))
	require.Contains(t, out, `"name":"ssh"`)
	require.NotContains(t, out, fmt.Sprintf(`"port":%d`, port+1), "a closed port is no record")
	// The records are in the workspace's inventory.
	require.Contains(t, s.cli(t, "", "records", "list", "lab", "--kind", "service", "-o", "jsonl"), fmt.Sprintf(`"port":%d`, port))

	// Out of the workspace's scope: refused before anything runs.
	_, errOut, code := s.run(t, "", "scan", "127.0.0.2", "-p", ports, "--workspace", "lab")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "127.0.0.2 matches no include entry")

	// In-process, no server: the targets are the scope.
	out, errOut, code = s.run(t, "", "scan", "127.0.0.1", "-p", ports, "--local", "-o", "csv")
	require.Equal(t, 0, code, errOut)
	require.True(t, strings.HasPrefix(out, "KIND,HOST,PORT,PROTO,STATE,SERVICE,BANNER\n"), out)
	require.Contains(t, out, fmt.Sprintf("service,127.0.0.1,%d,tcp,open,ssh,SSH-2.0-OpenSSH_9.2", port))
	require.Contains(t, errOut, "portscan done")
}
