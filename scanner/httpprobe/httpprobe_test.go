package httpprobe_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/httpprobe"
	"github.com/scanfleet/scanfleet/scanner/scannertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// site is the handler of the test servers: pages with titles and
// technology markers, redirect chains, a loop, an endless chain, an
// out-of-scope redirect, a slow page and a huge one.
func site(awayURL string, hits *atomic.Int64) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Server", "nginx/1.25.3")
		w.Header().Set("X-Powered-By", "PHP/8.2.1")
		http.SetCookie(w, &http.Cookie{Name: "PHPSESSID", Value: "x"})
		fmt.Fprint(w, `<!doctype html><html><head><meta charset="utf-8">
<meta name="generator" content="WordPress 6.4.2">
<title>
  Hello &amp; welcome
</title></head><body><link href="/wp-content/x.css"></body></html>`)
	})
	mux.HandleFunc("/java", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "Apache-Coyote/1.1")
		w.Header().Add("Set-Cookie", "JSESSIONID=abc; Path=/")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "<title>not html</title>")
	})
	redirect := func(from, to string) {
		mux.HandleFunc(from, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Redirect(w, r, to, http.StatusFound)
		})
	}
	redirect("/r1", "/r2")
	redirect("/r2", "final")
	mux.HandleFunc("/final", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<title>Final</title>") })
	redirect("/loop-a", "/loop-b")
	redirect("/loop-b", "/loop-a")
	mux.HandleFunc("/endless/", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/endless/"))
		http.Redirect(w, r, fmt.Sprintf("/endless/%d", n+1), http.StatusMovedPermanently)
	})
	redirect("/away", awayURL)
	redirect("/away-name", "http://www.other.test/")
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-r.Context().Done() // answers never; returns once the client gives up
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := make([]byte, 64<<10)
		for range 160 { // 10 MiB, unless the client hangs up first
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	return mux
}

type servers struct {
	plain, tls, away *httptest.Server
	awayHits, hits   atomic.Int64
}

func start(t *testing.T) *servers {
	t.Helper()
	s := &servers{}
	// The excluded server on 127.0.0.2: it must never be asked anything.
	l, err := net.Listen("tcp", "127.0.0.2:0")
	require.NoError(t, err)
	s.away = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.awayHits.Add(1) }))
	s.away.Listener.Close()
	s.away.Listener = l
	s.away.Start()
	quiet := log.New(io.Discard, "", 0) // the probes' failed handshakes are expected
	s.plain = httptest.NewUnstartedServer(site(s.away.URL+"/", &s.hits))
	s.plain.Config.ErrorLog = quiet
	s.plain.Start()
	s.tls = httptest.NewUnstartedServer(site(s.away.URL+"/", &s.hits))
	s.tls.Config.ErrorLog = quiet
	s.tls.StartTLS()
	t.Cleanup(func() {
		s.plain.Close()
		s.tls.Close()
		s.away.Close()
	})
	return s
}

func input(args map[string]any, targets ...string) *scanfleet.TaskInput {
	return &scanfleet.TaskInput{
		Type: "http", Args: args, Targets: targets,
		Scope: &scanfleet.Scope{Include: []string{"127.0.0.0/8", "*.example.test"}, Exclude: []string{"127.0.0.2"}},
	}
}

func run(t *testing.T, e httpprobe.Executor, in *scanfleet.TaskInput) *scanner.LocalEnv {
	t.Helper()
	env := &scanner.LocalEnv{}
	require.NoError(t, e.Run(context.Background(), in, env))
	return env
}

func byURL(env *scanner.LocalEnv) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range env.Records() {
		if r.Kind == scanfleet.KindHTTP {
			out[r.Key] = r.Data
		}
	}
	return out
}

func TestProbe(t *testing.T) {
	t.Parallel()
	s := start(t)
	hostPort := strings.TrimPrefix(s.plain.URL, "http://")
	tlsHostPort := strings.TrimPrefix(s.tls.URL, "https://")

	t.Run("title and technologies", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(nil, s.plain.URL+"/", s.plain.URL+"/java"))
		recs := byURL(env)
		root := recs[s.plain.URL+"/"]
		require.Equal(t, "Hello & welcome", root["title"])
		require.Equal(t, "nginx/1.25.3", root["server"])
		require.EqualValues(t, 200, root["status_code"])
		require.Equal(t, false, root["tls"])
		require.Equal(t, "127.0.0.1", root["ip"])
		require.Equal(t, "WordPress 6.4.2", root["generator"])
		require.Equal(t, []string{"nginx 1.25.3", "PHP 8.2.1", "WordPress 6.4.2"}, scannertest.Strings(root["technologies"]))
		require.Contains(t, root["content_type"], "text/html")
		java := recs[s.plain.URL+"/java"]
		require.NotContains(t, java, "title", "a text/plain body has no title")
		require.Equal(t, []string{"Apache Tomcat", "Java"}, scannertest.Strings(java["technologies"]))
		require.Equal(t, map[string]int64{"200": 2}, env.Results()["status_codes"])
	})

	t.Run("https first, then http", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(nil, tlsHostPort, hostPort))
		recs := byURL(env)
		require.Len(t, recs, 2, "%v", recs)
		require.Equal(t, true, recs["https://"+tlsHostPort+"/"]["tls"])
		require.Equal(t, false, recs["http://"+hostPort+"/"]["tls"])
		require.Equal(t, map[string]int64{"success": 2}, env.Results()["statuses"])
	})

	t.Run("all schemes", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(map[string]any{"all_schemes": true, "schemes": []any{"http", "https"}}, tlsHostPort))
		recs := byURL(env)
		require.Len(t, recs, 2, "the TLS server answers plain HTTP with 400")
		require.EqualValues(t, 400, recs["http://"+tlsHostPort+"/"]["status_code"])
	})

	t.Run("redirect chain", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(nil, s.tls.URL+"/r1"))
		recs := byURL(env)
		first := recs[s.tls.URL+"/r1"]
		require.EqualValues(t, 302, first["status_code"])
		require.Equal(t, s.tls.URL+"/r2", first["location"])
		require.Equal(t, []string{s.tls.URL + "/r1", s.tls.URL + "/r2", s.tls.URL + "/final"}, scannertest.Strings(first["redirect_chain"]))
		require.Equal(t, s.tls.URL+"/final", first["final_url"])
		require.Equal(t, "Final", recs[s.tls.URL+"/final"]["title"])
	})

	t.Run("redirect loop", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(nil, s.plain.URL+"/loop-a"))
		recs := byURL(env)
		require.Len(t, recs, 2)
		require.Equal(t, true, recs[s.plain.URL+"/loop-b"]["redirect_loop"])
	})

	t.Run("redirect limit", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(map[string]any{"max_redirects": float64(3)}, s.plain.URL+"/endless/0"))
		recs := byURL(env)
		require.Len(t, recs, 4, "the start and three redirects")
		require.Equal(t, true, recs[s.plain.URL+"/endless/3"]["redirect_limit"])
		require.Equal(t, s.plain.URL+"/endless/4", recs[s.plain.URL+"/endless/3"]["location"])
	})

	t.Run("out-of-scope redirects are not followed", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(nil, s.plain.URL+"/away", s.plain.URL+"/away-name"))
		recs := byURL(env)
		require.Len(t, recs, 2)
		require.Equal(t, true, recs[s.plain.URL+"/away"]["redirect_out_of_scope"])
		require.Equal(t, s.away.URL+"/", recs[s.plain.URL+"/away"]["location"])
		require.Equal(t, true, recs[s.plain.URL+"/away-name"]["redirect_out_of_scope"])
		require.Zero(t, s.awayHits.Load())
		require.Equal(t, int64(2), env.Results()["out_of_scope"])
	})

	t.Run("out-of-scope targets are not touched", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(nil, s.away.URL+"/", strings.TrimPrefix(s.away.URL, "http://"), "10.9.9.9/30", "ftp://x.example.test/", "bad target:0"))
		require.Empty(t, env.Records())
		require.Zero(t, s.awayHits.Load())
		res := env.Results()
		require.Equal(t, int64(3), res["out_of_scope"])
		require.Equal(t, int64(2), res["skipped"])
		require.Equal(t, map[string]int64{"out-of-scope": 2}, res["statuses"])
	})

	t.Run("slow server times out", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(map[string]any{"timeout": "200ms"}, s.plain.URL+"/slow"))
		require.Empty(t, env.Records())
		require.Equal(t, map[string]int64{"io-timeout": 1}, env.Results()["statuses"])
	})

	t.Run("huge body is cut", func(t *testing.T) {
		t.Parallel()
		env := run(t, httpprobe.Executor{}, input(map[string]any{"max_body": float64(100_000)}, s.plain.URL+"/huge"))
		rec := byURL(env)[s.plain.URL+"/huge"]
		require.Equal(t, 100_000, rec["body_bytes"])
		require.Equal(t, true, rec["body_truncated"])
	})

	t.Run("names resolve to in-scope addresses", func(t *testing.T) {
		t.Parallel()
		_, port, _ := net.SplitHostPort(hostPort)
		resolver := scannertest.Resolver(t, map[string][]string{"www.example.test": {"127.0.0.1"}, "ext.example.test": {"198.51.100.1"}})
		env := run(t, httpprobe.Executor{Resolver: resolver}, input(map[string]any{"schemes": []any{"http"}}, "www.example.test:"+port, "ext.example.test:"+port))
		recs := byURL(env)
		require.Equal(t, "Hello & welcome", recs["http://www.example.test:"+port+"/"]["title"])
		require.Len(t, recs, 1)
		require.Equal(t, map[string]int64{"success": 1, "out-of-scope": 1}, env.Results()["statuses"])
	})
}

func TestRefused(t *testing.T) {
	t.Parallel()
	env := run(t, httpprobe.Executor{}, input(nil, scannertest.ClosedAddr(t)))
	require.Empty(t, env.Records())
	require.Equal(t, map[string]int64{"connection-refused": 1}, env.Results()["statuses"])
	require.NotEmpty(t, env.Logs())
}

func TestCancel(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	got := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case got <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := input(map[string]any{"timeout": "1h", "concurrency": float64(1)}, srv.URL+"/a", srv.URL+"/b", srv.URL+"/c")
	done := make(chan error, 1)
	go func() { done <- httpprobe.Executor{}.Run(ctx, in, &scanner.LocalEnv{}) }()
	<-got
	cancel()
	scannertest.RequireCanceled(t, done)
	require.Equal(t, int64(1), hits.Load(), "no target after the cancel")
}

func TestBadArgs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"schemes": []any{"ftp"}}, "args.schemes[0]"},
		{map[string]any{"max_redirects": float64(-1)}, "args.max_redirects"},
		{map[string]any{"timeout": 5}, "args.timeout"},
	} {
		t.Run(c.want, func(t *testing.T) {
			t.Parallel()
			err := httpprobe.Executor{}.Run(context.Background(), input(c.args, "127.0.0.1:1"), &scanner.LocalEnv{})
			require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err), "%v", err)
			require.Contains(t, scanfleet.ErrorMessage(err), c.want)
		})
	}
}

func TestTaskType(t *testing.T) {
	t.Parallel()
	tt := httpprobe.Executor{}.TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, "http", tt.Name)
	require.Equal(t, scanfleet.PoolExternal, tt.Pool())
	args, err := tt.ValidateArgs(map[string]any{})
	require.NoError(t, err)
	require.Equal(t, []string{"https", "http"}, args["schemes"])
}
