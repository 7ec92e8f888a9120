package scanner_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

func TestPlan(t *testing.T) {
	t.Parallel()
	in := &scanfleet.TaskInput{
		Targets: []string{"127.0.0.0/29", "127.0.0.2", "http://127.0.0.9:8080/x", "localhost", "10.9.9.9", "blocked.example", "127.0.1.0/30"},
		Scope: &scanfleet.Scope{
			Include: []string{"127.0.0.0/28", "127.0.1.0/31", "::1", "blocked.example"},
			Exclude: []string{"127.0.0.3"},
		},
		Exclude: []string{"blocked.example"},
	}
	pl, err := scanner.NewPlan(context.Background(), in, nil)
	require.NoError(t, err)
	var got []string
	for i := range pl.Count() {
		got = append(got, pl.At(i).String())
	}
	// /29 minus .3, the bare .2 merged into it, the URL's host, localhost's
	// addresses (127.0.0.1 already there; ::1 when /etc/hosts has it), and
	// only the in-scope half of 127.0.1.0/30.
	require.Subset(t, got, []string{"127.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.9", "127.0.1.0", "127.0.1.1"})
	require.NotContains(t, got, "127.0.0.3")
	require.NotContains(t, got, "10.9.9.9")
	require.NotContains(t, got, "127.0.1.2")
	require.Contains(t, pl.Names[netip.MustParseAddr("127.0.0.1")], "localhost")
	for _, a := range got {
		require.True(t, pl.Contains(netip.MustParseAddr(a)), a)
	}
	require.False(t, pl.Contains(netip.MustParseAddr("127.0.0.3")))
	require.False(t, pl.Contains(netip.MustParseAddr("127.0.0.8")))
	reasons := map[string]string{}
	for _, s := range pl.OutOfScope {
		reasons[s.Target] = s.Reason
	}
	require.Contains(t, reasons["10.9.9.9"], "matches no include entry")
	require.Contains(t, reasons["blocked.example"], "excluded")
	require.Contains(t, reasons["127.0.0.0/29"], "partly out of scope")
	require.Contains(t, reasons["127.0.1.0/30"], "only 127.0.1.0/31")
}

func TestPlanRefusesBadTargets(t *testing.T) {
	t.Parallel()
	_, err := scanner.NewPlan(context.Background(), &scanfleet.TaskInput{Targets: []string{"127.0.0.1:http"}}, nil)
	require.ErrorContains(t, err, `"127.0.0.1:http"`)
	_, err = scanner.NewPlan(context.Background(), &scanfleet.TaskInput{
		Targets: []string{"2001:db8::/64"}, Scope: &scanfleet.Scope{Include: []string{"2001:db8::/64"}},
	}, nil)
	require.ErrorContains(t, err, "split the scan")
}

func TestAbsolute(t *testing.T) {
	t.Parallel()
	require.Equal(t, "admin.", scanner.Absolute("admin"))
	require.Equal(t, "www.example.com.", scanner.Absolute("www.example.com."))
	require.Equal(t, "localhost", scanner.Absolute("localhost"))
	require.Equal(t, "app.localhost", scanner.Absolute("app.localhost"))
}

func TestRefusePorts(t *testing.T) {
	t.Parallel()
	require.NoError(t, scanner.RefusePorts([]string{"10.0.0.5", "10.0.0.0/24", "www.example.com", "2001:db8::1"}))
	for _, target := range []string{"10.0.0.5:8080", "[2001:db8::1]:22", "https://www.example.com/"} {
		err := scanner.RefusePorts([]string{"10.0.0.1", target})
		require.ErrorContains(t, err, "targets[1]")
		require.ErrorContains(t, err, "ports argument")
	}
}
