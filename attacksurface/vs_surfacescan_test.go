package attacksurface

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// portScript is the Python port of surfacescan, relative to this package.
const portScript = "../bench/surfacescan/surfacescan_port.py"

// startPort starts the surfacescan port on a free loopback port with the
// environment file data, and returns its base URL. The process is killed,
// by its PID, when the benchmark ends.
func startPort(b *testing.B, data string) string {
	b.Helper()
	python := findPython(b)
	cmd := exec.Command(python, portScript, "--data", data, "--host", "127.0.0.1", "--port", "0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start surfacescan port: %v", err)
	}
	ready := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- addr
			}
		}
	}()
	b.Cleanup(func() {
		_ = cmd.Process.Kill() // only the process this benchmark started
		_ = cmd.Wait()
		<-drained
	})
	select {
	case addr := <-ready:
		return "http://" + addr
	case <-time.After(60 * time.Second):
		b.Fatalf("surfacescan port not ready after 60 s; stderr:\n%s", stderr.String())
	}
	return ""
}

// findPython returns the python3 to run the port with, or skips b.
func findPython(b *testing.B) string {
	b.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		b.Skip("python3 not found: skipping the comparison with the surfacescan port")
	}
	if _, err := os.Stat(portScript); err != nil {
		b.Skipf("surfacescan port not found: %v", err)
	}
	return python
}

func getIDs(b *testing.B, url string) []string {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	var ids []string
	if err := json.Unmarshal(body, &ids); err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
	return ids
}

// BenchmarkVsSurfacescan compares the Go handler with a Python port of
// surfacescan (bench/surfacescan) over loopback: a generated environment
// of 10,000 VMs, 1,000 tags and 10,000 rules, then the same 2,000 random
// /api/v1/attack requests from 8 keep-alive clients against each, capped at
// 60 s per server. The Go side answers mode=tag, which gives the port's
// answers (checked on a sample first), and also the default transitive
// mode. It reports req/s and latency of each and the ratio
// x-vs-surfacescan (Go tag-mode req/s over port req/s). Skipped with
// -short or without python3.
func BenchmarkVsSurfacescan(b *testing.B) {
	if testing.Short() {
		b.Skip("skipping the Python comparison in -short mode")
	}
	const requests, clients = 2000, 8
	const limit = 60 * time.Second
	findPython(b)

	file := filepath.Join(b.TempDir(), "env.json")
	if err := os.WriteFile(file, benchJSON(b, 10_000), 0o600); err != nil {
		b.Fatal(err)
	}
	portURL := startPort(b, file)

	g := benchGraph(b, 10_000)
	srv := httptest.NewServer(NewHandler(g))
	defer srv.Close()

	// Same answers first, or the comparison means nothing.
	for _, p := range randomPaths(g, 12, "") {
		want := getIDs(b, srv.URL+p+"&mode=tag")
		if got := getIDs(b, portURL+p); !slicesEqual(got, want) {
			b.Fatalf("%s: port answers %d ids, Go tag mode %d", p, len(got), len(want))
		}
	}

	paths := randomPaths(g, requests, "")
	tagPaths := randomPaths(g, requests, ModeTag)
	var port, goTag, goTrans loadResult
	for b.Loop() {
		port = runLoad(b.Context(), portURL, paths, requests, clients, limit)
		goTag = runLoad(b.Context(), srv.URL, tagPaths, requests, clients, limit)
		goTrans = runLoad(b.Context(), srv.URL, paths, requests, clients, limit)
	}
	if port.failed+goTag.failed+goTrans.failed > 0 {
		b.Fatalf("failed requests: port %d, go tag %d, go transitive %d", port.failed, goTag.failed, goTrans.failed)
	}
	if port.done < requests {
		b.Logf("surfacescan port answered %d of %d requests within %s", port.done, requests, limit)
	}
	reportLoad(b, "port-", port)
	reportLoad(b, "go-tag-", goTag)
	reportLoad(b, "go-transitive-", goTrans)
	if r := port.rps(); r > 0 {
		b.ReportMetric(goTag.rps()/r, "x-vs-surfacescan")
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
