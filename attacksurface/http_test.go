package attacksurface

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func newTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	g, err := Build(mkEnv(docEnv, docFW...))
	require.NoError(t, err)
	srv := httptest.NewServer(NewHandler(g))
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, srv *httptest.Server, method, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	require.NoError(t, err)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(body)
}

func TestHandlerAttack(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/api/v1/attack?vm_id=db-1", 200, `["app-1","jump-1","web-1"]`},
		{"/api/v1/attack?vm_id=db-1&mode=transitive", 200, `["app-1","jump-1","web-1"]`},
		{"/api/v1/attack?vm_id=db-1&mode=direct", 200, `["app-1"]`},
		{"/api/v1/attack?vm_id=db-1&mode=tag", 200, `["app-1","web-1"]`},
		{"/api/v1/attack?vm_id=jump-1", 200, `[]`},
		{"/attack?vm_id=db-1", 200, `["app-1","jump-1","web-1"]`},
		{"/api/v1/attack?vm_id=nope", 404, `{"error":{"code":"not_found","message":"vm \"nope\" not found"}}`},
		{"/api/v1/attack", 400, `{"error":{"code":"invalid","message":"missing vm_id query parameter"}}`},
		{"/api/v1/attack?vm_id=", 400, `{"error":{"code":"invalid","message":"missing vm_id query parameter"}}`},
		{"/api/v1/attack?vm_id=db-1&mode=sideways", 400, `{"error":{"code":"invalid","message":"unknown mode \"sideways\": want transitive, direct or tag"}}`},
		{"/api/v1/nothing", 404, `{"error":{"code":"not_found","message":"path \"/api/v1/nothing\" not found"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			status, hdr, body := do(t, srv, http.MethodGet, tt.path)
			require.Equal(t, tt.status, status)
			require.Equal(t, "application/json", hdr.Get("Content-Type"))
			require.JSONEq(t, tt.body, body)
		})
	}
}

func TestHandlerMethods(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)
	for _, path := range []string{"/api/v1/attack?vm_id=db-1", "/api/v1/stats", "/stats", "/attack?vm_id=db-1"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			status, hdr, body := do(t, srv, method, path)
			require.Equal(t, http.StatusMethodNotAllowed, status, "%s %s", method, path)
			require.Equal(t, "GET, HEAD", hdr.Get("Allow"))
			require.Contains(t, body, `"code":"method_not_allowed"`)
		}
		status, _, body := do(t, srv, http.MethodHead, path)
		require.Equal(t, http.StatusOK, status)
		require.Empty(t, body)
	}
}

func stats(t *testing.T, srv *httptest.Server, path string) StatsSnapshot {
	t.Helper()
	status, _, body := do(t, srv, http.MethodGet, path)
	require.Equal(t, http.StatusOK, status)
	var s StatsSnapshot
	require.NoError(t, json.Unmarshal([]byte(body), &s))
	return s
}

func TestHandlerStats(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t)

	first := stats(t, srv, "/api/v1/stats")
	require.Equal(t, StatsSnapshot{VMCount: 4}, first, "no request yet: the current one is excluded")

	second := stats(t, srv, "/api/v1/stats")
	require.Equal(t, int64(1), second.RequestCount, "the previous /stats counts")
	require.Greater(t, second.AverageRequestTime, 0.0)

	do(t, srv, http.MethodGet, "/api/v1/attack?vm_id=db-1")
	do(t, srv, http.MethodGet, "/api/v1/attack?vm_id=nope") // 404 counts
	do(t, srv, http.MethodGet, "/attack")                   // 400 counts
	do(t, srv, http.MethodPost, "/stats")                   // 405 counts
	do(t, srv, http.MethodGet, "/favicon.ico")              // unknown path counts
	third := stats(t, srv, "/stats")
	require.Equal(t, int64(7), third.RequestCount)
	require.Equal(t, 4, third.VMCount)

	status, _, body := do(t, srv, http.MethodGet, "/stats")
	require.Equal(t, http.StatusOK, status)
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	require.ElementsMatch(t, []string{"vm_count", "request_count", "average_request_time"}, keys(raw))
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestServe(t *testing.T) {
	t.Parallel()
	g, err := Build(mkEnv(docEnv, docFW...))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", g, nil, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready")
	}

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/api/v1/attack?vm_id=app-1", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.JSONEq(t, `["jump-1","web-1"]`, string(body))

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("no graceful shutdown")
	}

	err = Serve(t.Context(), "127.0.0.1:-1", g, nil, nil)
	require.ErrorContains(t, err, "serve attack surface")
}

func TestStats(t *testing.T) {
	t.Parallel()
	var s Stats
	require.Equal(t, StatsSnapshot{VMCount: 3}, s.Snapshot(3))
	s.Track(100 * time.Millisecond)
	s.Track(300 * time.Millisecond)
	s.Track(-time.Second) // counts, as zero
	snap := s.Snapshot(0)
	require.Equal(t, int64(3), snap.RequestCount)
	require.InDelta(t, 0.4/3, snap.AverageRequestTime, 1e-9)

	b, err := json.Marshal(StatsSnapshot{VMCount: 2, RequestCount: 4, AverageRequestTime: 0.5})
	require.NoError(t, err)
	require.JSONEq(t, `{"vm_count":2,"request_count":4,"average_request_time":0.5}`, string(b))
}

func TestStatsConcurrent(t *testing.T) {
	t.Parallel()
	var s Stats
	const workers, each = 8, 1000
	done := make(chan struct{})
	for range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for range each {
				s.Track(time.Millisecond)
			}
		}()
	}
	for range workers {
		<-done
	}
	snap := s.Snapshot(0)
	require.Equal(t, int64(workers*each), snap.RequestCount)
	require.InDelta(t, 0.001, snap.AverageRequestTime, 1e-12)
}

func TestHandlerLargeAnswer(t *testing.T) {
	t.Parallel()
	env := Generate(GenConfig{VMs: 3000, Tags: 50, Rules: 200, Seed: 11})
	g, err := Build(env)
	require.NoError(t, err)
	srv := httptest.NewServer(NewHandler(g))
	defer srv.Close()
	for _, vm := range env.VMs[:20] {
		want, err := g.Attackers(vm.ID, ModeTransitive)
		require.NoError(t, err)
		status, _, body := do(t, srv, http.MethodGet, "/api/v1/attack?vm_id="+vm.ID)
		require.Equal(t, http.StatusOK, status)
		var got []string
		require.NoError(t, json.NewDecoder(strings.NewReader(body)).Decode(&got))
		if len(want) == 0 {
			require.Equal(t, "[]", body)
			continue
		}
		require.Equal(t, want, got)
	}
}
