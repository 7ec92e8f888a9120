package execscan

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// TestFaradayExecutor runs a Faraday-style executor unchanged: its
// manifest, its string TARGET, its presence-tested boolean, its
// bulk_create output and its blank end line.
func TestFaradayExecutor(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: the Faraday-style executor cannot run")
	}
	m, err := Load(filepath.Join("testdata", "faraday_style", ManifestFile))
	require.NoError(t, err)
	for _, deep := range []bool{false, true} {
		t.Run("deep="+strconv.FormatBool(deep), func(t *testing.T) {
			t.Parallel()
			in := taskInput(map[string]any{"DEEP": deep})
			in.Targets = []string{"192.0.2.10", "192.0.2.11", "203.0.113.5"}
			in.Scope = &scanfleet.Scope{Include: []string{"192.0.2.0/24"}}
			env, err := run(t, context.Background(), m, Config{Env: map[string]string{"API_TOKEN": "tok-123"}}, in)
			require.NoError(t, err, "logs: %q", env.Logs())
			want := map[scanfleet.RecordKind]int{scanfleet.KindHost: 2, scanfleet.KindDomain: 2, scanfleet.KindService: 2, scanfleet.KindFinding: 2}
			if deep {
				want[scanfleet.KindFinding] = 4
			}
			require.Equal(t, want, kinds(env.Records()))
			ips := map[string]bool{}
			for _, r := range env.Records() {
				switch r.Kind {
				case scanfleet.KindHost:
					ips[r.Data["ip"].(string)] = true
				case scanfleet.KindService:
					require.Equal(t, int64(80), r.Data["port"])
					require.Equal(t, "nginx", r.Data["version"])
				case scanfleet.KindFinding:
					if r.Data["name"] == "Token accepted" {
						require.Equal(t, "tok-123", r.Data["description"], "the configured variable reached the program")
					}
				}
			}
			require.Equal(t, map[string]bool{"192.0.2.10": true, "192.0.2.11": true}, ips, "the out-of-scope target never reached the program")
			require.Equal(t, 1, env.Results()["out_of_scope"])
			require.Equal(t, int64(2), env.Results()["lines"], "the document and Faraday's blank end line")
		})
	}
}

// TestNmapExecutor runs the shipped nmap executor against a loopback
// listener and finds its open port.
func TestNmapExecutor(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("nmap"); err != nil {
		t.Skip("nmap is not installed (apt-get install nmap): the nmap executor cannot run")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: the nmap executor cannot run")
	}
	ms, errs := LoadDir(filepath.Join("..", "..", "executors"))
	require.Empty(t, errs, "the shipped manifests must load")
	var m *Manifest
	for _, x := range ms {
		if x.Name == "nmap" {
			m = x
		}
	}
	require.NotNil(t, m, "executors/nmap is missing")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	defer wg.Wait()
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// A second port, bound then freed, is most likely closed.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln2.Addr().(*net.TCPAddr).Port
	ln2.Close()

	in := taskInput(map[string]any{"PORTS": strconv.Itoa(port) + "," + strconv.Itoa(closed)})
	in.Targets = []string{"127.0.0.1", "127.0.0.2", "localhost"}
	in.Exclude = []string{"127.0.0.2"}
	env, err := run(t, context.Background(), m, Config{}, in)
	require.NoError(t, err, "logs: %q", env.Logs())
	var open, host bool
	for _, r := range env.Records() {
		require.Equal(t, "127.0.0.1", r.Data["ip"], "only the in-scope address was scanned")
		switch r.Kind {
		case scanfleet.KindHost:
			host = true
		case scanfleet.KindService:
			if r.Data["port"] == int64(port) {
				require.Equal(t, "open", r.Data["state"])
				open = true
			}
		}
	}
	require.True(t, host, "no host record: %v", env.Records())
	require.True(t, open, "the listener's port %d was not found open: %v", port, env.Records())
	require.Equal(t, 1, env.Results()["out_of_scope"])
	require.True(t, hasLog(env, "check_cmds[0] (nmap --version): ok Nmap version"), "logs: %q", env.Logs())
	require.True(t, hasLog(env, "skipped 'localhost': not an IP address or prefix"), "logs: %q", env.Logs())
}
