//go:build linux

package portscan_test

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/portscan"
)

// nmapArgs is the peer: nmap's connect scan of every port at its fastest
// timing; --min-rate 50000 was its best on loopback (1.3s, against 2.4s
// without it).
var nmapArgs = []string{"-sT", "-Pn", "-n", "-p-", "-T5", "--min-rate", "50000", "-oG", "-", "127.0.0.1"}

// BenchmarkPortscanVsNmap scans all 65535 TCP ports of 127.0.0.1, where it
// opened 20 listeners, and has nmap -sT scan the same ports after each
// scan, reporting both and the ratio of their wall times (below 1: the
// portscan is faster). Banners are off, as nmap -sT grabs none.
//
//	go test -run '^$' -bench PortscanVsNmap -benchtime 3x ./scanner/portscan/
func BenchmarkPortscanVsNmap(b *testing.B) {
	want := map[uint16]bool{}
	for range 20 {
		want[serve(b, "127.0.0.1:0", nil).port] = true
	}
	ex, err := portscan.New(portscan.Config{})
	require.NoError(b, err)
	in := input([]string{"127.0.0.1"}, nil, map[string]any{"ports": "all", "banners": false})

	nmap, err := exec.LookPath("nmap")
	if err != nil {
		b.Logf("nmap is not installed (apt-get install nmap): no ratio")
	}
	// The two alternate, so that a change in the machine's load over the
	// run hits both alike.
	var ours, theirs time.Duration
	var found, nmapFound map[uint16]bool
	for b.Loop() {
		env := &scanner.LocalEnv{}
		start := time.Now()
		require.NoError(b, ex.Run(context.Background(), in, env))
		ours += time.Since(start)
		found = map[uint16]bool{}
		for _, r := range env.Records() {
			if r.Data["state"] == "open" {
				found[uint16(r.Data["port"].(int64))] = true
			}
		}
		if nmap != "" {
			b.StopTimer()
			start := time.Now()
			out, err := exec.Command(nmap, nmapArgs...).Output()
			theirs += time.Since(start)
			require.NoError(b, err, "nmap %v", nmapArgs)
			nmapFound = grepableOpen(out)
			b.StartTimer()
		}
	}
	per := ours / time.Duration(b.N)
	b.ReportMetric(65535/per.Seconds(), "probes/s")
	b.ReportMetric(float64(overlap(found, want)), "found")
	b.Logf("portscan: %s per scan, %.0f probes/s, found %d/%d of the listeners, %d open ports in all",
		per.Round(time.Millisecond), 65535/per.Seconds(), overlap(found, want), len(want), len(found))
	if nmap == "" {
		return
	}
	nmapPer := theirs / time.Duration(b.N)
	b.ReportMetric(nmapPer.Seconds(), "nmap-s/op")
	b.ReportMetric(per.Seconds()/nmapPer.Seconds(), "time/nmap")
	b.Logf("nmap %v: %s per scan, %.0f probes/s, found %d/%d of the listeners, %d open ports in all",
		nmapArgs, nmapPer.Round(time.Millisecond), 65535/nmapPer.Seconds(), overlap(nmapFound, want), len(want), len(nmapFound))
	b.Logf("ratio: portscan takes %.2fx nmap's wall time (%.2fx its speed)", per.Seconds()/nmapPer.Seconds(), nmapPer.Seconds()/per.Seconds())
}

func overlap(a, b map[uint16]bool) int {
	n := 0
	for p := range a {
		if b[p] {
			n++
		}
	}
	return n
}

var grepablePort = regexp.MustCompile(`(\d+)/open/tcp/`)

// grepableOpen reads the open ports from nmap -oG output.
func grepableOpen(out []byte) map[uint16]bool {
	open := map[uint16]bool{}
	for line := range bytes.Lines(out) {
		for _, m := range grepablePort.FindAllSubmatch(line, -1) {
			if p, err := strconv.ParseUint(string(m[1]), 10, 16); err == nil {
				open[uint16(p)] = true
			}
		}
	}
	return open
}
