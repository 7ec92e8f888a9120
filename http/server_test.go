package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	sfhttp "github.com/scanfleet/scanfleet/http"
	"github.com/scanfleet/scanfleet/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a running server on a real loopback listener over a real SQLite
// store, with a token per role.
type env struct {
	t                       *testing.T
	url                     string
	store                   scanfleet.Store
	admin, operator, viewer string
}

func newEnv(t *testing.T, cfg sfhttp.Config) *env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "test.db")})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	reg, err := scanfleet.NewRegistry(scanfleet.NoopTaskType())
	require.NoError(t, err)
	cfg.Addr = "127.0.0.1:0"
	srv, err := sfhttp.NewServer(store, reg, cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(func() { require.NoError(t, srv.Stop(context.Background())) })
	e := &env{t: t, url: srv.URL(), store: store}
	for _, r := range []struct {
		role scanfleet.Role
		dst  *string
	}{{scanfleet.RoleAdmin, &e.admin}, {scanfleet.RoleOperator, &e.operator}, {scanfleet.RoleViewer, &e.viewer}} {
		tok, secret, err := scanfleet.NewToken(string(r.role), r.role, time.Now())
		require.NoError(t, err)
		require.NoError(t, store.CreateToken(ctx, tok))
		*r.dst = secret
	}
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// errorMessage returns the message of an error answer.
func (r response) errorMessage(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	require.True(t, ok, "not an error body: %s", r.body)
	return e["message"].(string)
}

func (e *env) do(method, path, token, ctype string, body io.Reader) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	require.NoError(e.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) jsonReq(method, path, token string, v any) response {
	e.t.Helper()
	var body io.Reader
	if v != nil {
		if s, ok := v.(string); ok {
			body = strings.NewReader(s)
		} else {
			b, err := json.Marshal(v)
			require.NoError(e.t, err)
			body = bytes.NewReader(b)
		}
	}
	return e.do(method, path, token, "application/json", body)
}

func (e *env) createWorkspace(name string, include ...string) {
	e.t.Helper()
	r := e.jsonReq("POST", "/api/v1/workspaces", e.operator, map[string]any{"name": name, "scope": map[string]any{"include": include}})
	require.Equal(e.t, http.StatusCreated, r.status, "%s", r.body)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})

	r := e.do("GET", "/api/v1/health", "", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "ok", r.json(t)["status"])

	for _, path := range []string{"/api/v1/workspaces", "/api/v1/task-types", "/api/v1/openapi.json", "/api/v1/tasks", "/api/v1/scans", "/api/v1/tokens", "/metrics"} {
		r := e.do("GET", path, "", "", nil)
		require.Equal(t, http.StatusUnauthorized, r.status, path)
		require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
		require.Contains(t, r.errorMessage(t), "bearer token")
		r = e.do("GET", path, "sfk_not-a-real-token", "", nil)
		require.Equal(t, http.StatusUnauthorized, r.status, path)
	}
	// A viewer reads but does not write.
	require.Equal(t, http.StatusOK, e.do("GET", "/api/v1/workspaces", e.viewer, "", nil).status)
	r = e.jsonReq("POST", "/api/v1/workspaces", e.viewer, map[string]any{"name": "x"})
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.errorMessage(t), "operator")
	// An operator does not manage tokens.
	require.Equal(t, http.StatusForbidden, e.do("GET", "/api/v1/tokens", e.operator, "", nil).status)
	require.Equal(t, http.StatusOK, e.do("GET", "/api/v1/tokens", e.admin, "", nil).status)
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	r := e.jsonReq("POST", "/api/v1/tokens", e.admin, map[string]any{"name": "ci", "role": "viewer"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	m := r.json(t)
	secret := m["token"].(string)
	require.True(t, strings.HasPrefix(secret, scanfleet.TokenPrefix))
	require.Equal(t, http.StatusOK, e.do("GET", "/api/v1/workspaces", secret, "", nil).status)

	// The list never shows a secret, nor its hash.
	r = e.do("GET", "/api/v1/tokens", e.admin, "", nil)
	require.NotContains(t, string(r.body), secret)
	require.NotContains(t, string(r.body), scanfleet.HashToken(secret))

	r = e.jsonReq("POST", "/api/v1/tokens", e.admin, map[string]any{"name": "x", "role": "root"})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorMessage(t), `"root"`)

	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/api/v1/tokens/"+m["id"].(string), e.admin, "", nil).status)
	require.Equal(t, http.StatusUnauthorized, e.do("GET", "/api/v1/workspaces", secret, "", nil).status)
}

func TestWorkspaces(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	r := e.jsonReq("POST", "/api/v1/workspaces", e.operator, `{"name":"acme","scope":{"include":["10.0.0.0/24","*.Example.com."],"exclude":["10.0.0.5"]}}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	ws := r.json(t)
	require.Equal(t, []any{"10.0.0.0/24", "*.example.com"}, ws["scope"].(map[string]any)["include"])

	r = e.jsonReq("POST", "/api/v1/workspaces", e.operator, `{"name":"acme","scope":{"include":[]}}`)
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, r.errorMessage(t), "acme")

	r = e.do("GET", "/api/v1/workspaces/acme/scope/check?target=10.0.0.5", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, false, r.json(t)["in_scope"])
	r = e.do("GET", "/api/v1/workspaces/acme/scope/check?target=https://www.example.com/x", e.viewer, "", nil)
	require.Equal(t, true, r.json(t)["in_scope"])

	r = e.jsonReq("PATCH", "/api/v1/workspaces/acme", e.operator, `{"scope":{"include":["192.168.1.0/24"],"exclude":[]}}`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = e.do("GET", "/api/v1/workspaces/acme", e.viewer, "", nil)
	require.Equal(t, []any{"192.168.1.0/24"}, r.json(t)["scope"].(map[string]any)["include"])

	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/workspaces/nope", e.viewer, "", nil).status)
	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/api/v1/workspaces/acme", e.operator, "", nil).status)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/workspaces/acme", e.viewer, "", nil).status)
}

func TestWorkspacePagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	for i := 0; i < 7; i++ {
		e.createWorkspace(fmt.Sprintf("ws-%02d", i), "10.0.0.1")
	}
	var names []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		r := e.do("GET", "/api/v1/workspaces?limit=3&cursor="+cursor, e.viewer, "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		m := r.json(t)
		for _, it := range m["items"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		cursor = m["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	require.Equal(t, []string{"ws-00", "ws-01", "ws-02", "ws-03", "ws-04", "ws-05", "ws-06"}, names)
	r := e.do("GET", "/api/v1/workspaces?limit=5000", e.viewer, "", nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorMessage(t), "limit")
}

// TestBadInput checks that each kind of bad input gets a 4xx naming the
// problem, and that nothing is written.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{MaxBodyBytes: 4096, MaxLineBytes: 1024})
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		want                            string
	}{
		{"malformed json", "POST", "/api/v1/workspaces", "application/json", `{"name":"a",`, 400, "malformed JSON"},
		{"syntax error offset", "POST", "/api/v1/workspaces", "application/json", `{"name" "a"}`, 400, "byte 9"},
		{"unknown field", "POST", "/api/v1/workspaces", "application/json", `{"name":"a","scop":{}}`, 400, `unknown field "scop"`},
		{"wrong type", "POST", "/api/v1/workspaces", "application/json", `{"name":5}`, 400, "name"},
		{"empty body", "POST", "/api/v1/workspaces", "application/json", ``, 400, "empty"},
		{"trailing data", "POST", "/api/v1/workspaces", "application/json", `{"name":"a"} {}`, 400, "after the JSON value"},
		{"bad cidr", "POST", "/api/v1/workspaces", "application/json", `{"name":"a","scope":{"include":["10.0.0.0/33"]}}`, 400, `scope.include[0]: "10.0.0.0/33"`},
		{"bad domain", "POST", "/api/v1/workspaces", "application/json", `{"name":"a","scope":{"include":["exa mple.com"]}}`, 400, `"exa mple.com"`},
		{"whole internet", "POST", "/api/v1/workspaces", "application/json", `{"name":"a","scope":{"include":["0.0.0.0/0"]}}`, 400, "allow_broad"},
		{"bad slug", "POST", "/api/v1/workspaces", "application/json", `{"name":"Acme Corp"}`, 400, "name"},
		{"too large", "POST", "/api/v1/workspaces", "application/json", `{"name":"a","description":"` + strings.Repeat("x", 5000) + `"}`, 413, "4096-byte limit"},
		{"content type", "POST", "/api/v1/workspaces", "text/xml", `<a/>`, 415, "text/xml"},
		{"unknown enum", "GET", "/api/v1/tasks?status=running", "", ``, 400, `"running"`},
		{"bad time", "GET", "/api/v1/tasks?since=yesterday", "", ``, 400, "since"},
		{"unknown kind", "GET", "/api/v1/workspaces/acme/records?kind=vuln", "", ``, 400, `"vuln"`},
		{"unknown workspace records", "POST", "/api/v1/workspaces/nope/records", "application/x-ndjson", `{"kind":"host","ip":"10.0.0.1"}`, 404, `"nope"`},
		{"unknown workspace scan", "POST", "/api/v1/scans", "application/json", `{"name":"s","type":"noop","workspaces":["nope"]}`, 400, `"nope"`},
		{"unknown task type", "POST", "/api/v1/scans", "application/json", `{"name":"s","type":"nmap","workspaces":["acme"]}`, 400, `"nmap"`},
		{"bad arg", "POST", "/api/v1/scans", "application/json", `{"name":"s","type":"noop","args":{"sleep":"soon"},"workspaces":["acme"]}`, 400, "args.sleep"},
		{"unknown arg", "POST", "/api/v1/scans", "application/json", `{"name":"s","type":"noop","args":{"slep":"1s"},"workspaces":["acme"]}`, 400, "args.slep"},
		{"negative records", "POST", "/api/v1/scans", "application/json", `{"name":"s","type":"noop","args":{"records":-1},"workspaces":["acme"]}`, 400, "args.records"},
		{"bad frequency", "POST", "/api/v1/scans", "application/json", `{"name":"s","type":"noop","workspaces":["acme"],"frequency":"often"}`, 400, "often"},
		{"bad cron", "POST", "/api/v1/scans", "application/json", `{"name":"s","type":"noop","workspaces":["acme"],"cron":"61 * * * *"}`, 400, "cron"},
		{"unknown route", "GET", "/api/v1/nothing", "", ``, 404, "no route"},
		{"wrong method", "PUT", "/api/v1/workspaces", "", ``, 405, "PUT"},
	}
	e.createWorkspace("acme", "10.0.0.0/24")
	for _, tt := range tests {
		r := e.do(tt.method, tt.path, e.admin, tt.ctype, strings.NewReader(tt.body))
		require.Equal(t, tt.status, r.status, "%s: %s", tt.name, r.body)
		require.Contains(t, r.errorMessage(t), tt.want, tt.name)
	}
	// Nothing of the above was written.
	r := e.do("GET", "/api/v1/workspaces", e.viewer, "", nil)
	require.Len(t, r.json(t)["items"], 1)
	r = e.do("GET", "/api/v1/scans", e.viewer, "", nil)
	require.Len(t, r.json(t)["items"], 0)
}

func TestScansAndTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	e.createWorkspace("acme", "10.0.0.0/24")
	e.createWorkspace("beta", "*.beta.example")

	r := e.do("GET", "/api/v1/task-types", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status)
	tt := r.json(t)["items"].([]any)[0].(map[string]any)
	require.Equal(t, "noop", tt["name"])
	require.Equal(t, "external", tt["pool"])

	r = e.jsonReq("POST", "/api/v1/scans", e.operator, `{"name":"nightly","type":"noop","args":{"sleep":"1s","records":10},"workspaces":["acme","beta"],"frequency":"24h"}`)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	scan := r.json(t)
	id := scan["id"].(string)
	require.Equal(t, "24h0m0s", scan["frequency"])
	require.Equal(t, true, scan["enabled"])
	require.Equal(t, map[string]any{"sleep": "1s", "records": float64(10)}, scan["args"])

	r = e.jsonReq("PATCH", "/api/v1/scans/"+id, e.operator, `{"enabled":false,"args":{"records":3}}`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, false, r.json(t)["enabled"])
	r = e.jsonReq("PATCH", "/api/v1/scans/"+id, e.operator, `{"args":{"records":"many"}}`)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorMessage(t), "args.records")

	r = e.do("POST", "/api/v1/scans/"+id+"/run", e.operator, "", nil)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	tasks := r.json(t)["tasks"].([]any)
	require.Len(t, tasks, 2)
	task := tasks[0].(map[string]any)
	require.Equal(t, "requested", task["status"])
	input := task["input"].(map[string]any)
	require.Equal(t, task["id"], input["task_id"])
	require.Equal(t, map[string]any{"sleep": "0s", "records": float64(3)}, input["args"])

	r = e.do("GET", "/api/v1/scans/"+id, e.viewer, "", nil)
	require.NotNil(t, r.json(t)["last_run_at"])

	r = e.do("GET", "/api/v1/tasks?status=requested&workspace=beta", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	items := r.json(t)["items"].([]any)
	require.Len(t, items, 1)
	require.Equal(t, "beta", items[0].(map[string]any)["workspace"])
	r = e.do("GET", "/api/v1/tasks?status=finished,failed", e.viewer, "", nil)
	require.Len(t, r.json(t)["items"], 0)
	r = e.do("GET", "/api/v1/tasks?scan="+id+"&since="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), e.viewer, "", nil)
	require.Len(t, r.json(t)["items"], 2)

	taskID := task["id"].(string)
	require.NoError(t, e.store.AppendTaskLogs(context.Background(), taskID, []string{"one", "two", "three"}, time.Now()))
	r = e.do("GET", "/api/v1/tasks/"+taskID+"/logs?after=1", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	logs := r.json(t)
	require.Len(t, logs["items"], 2)
	require.Equal(t, float64(3), logs["next_after"])
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/tasks/0190d1f0-0000-7000-8000-000000000000", e.viewer, "", nil).status)

	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/api/v1/scans/"+id, e.operator, "", nil).status)
	require.Equal(t, http.StatusNotFound, e.do("GET", "/api/v1/scans/"+id, e.viewer, "", nil).status)
}

const bulkCreate = `{"hosts":[{"ip":"10.0.0.7","os":"Linux","hostnames":["web.acme.example"],"services":[{"name":"https","port":443,"protocol":"tcp","status":"open","version":"nginx 1.25","vulnerabilities":[{"name":"Weak TLS","severity":"medium","desc":"TLS 1.0 enabled","refs":["CVE-2011-3389"]}]},{"name":"ssh","port":22,"protocol":"tcp","status":"open"}],"vulnerabilities":[{"name":"Host exposes SNMP","severity":"low"}]}],"command":{"tool":"nmap","command":"nmap -sV","user":"ci","hostname":"","start_date":"2026-11-20T10:00:00Z"}}`

func TestIngest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	e.createWorkspace("acme", "10.0.0.0/24")
	body := `{"kind":"service","ip":"10.0.0.8","port":80,"proto":"tcp","state":"open","name":"http","banner":"nginx"}

{"kind":"domain","name":"WWW.Acme.Example."}
` + bulkCreate + "\r\n"

	r := e.do("POST", "/api/v1/workspaces/acme/records", e.operator, "application/x-ndjson", strings.NewReader(body))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	res := r.json(t)
	// 2 native + host, domain, 2 services, 2 findings from bulk_create.
	require.Equal(t, float64(8), res["accepted"])
	require.Equal(t, float64(8), res["new"])

	r = e.do("GET", "/api/v1/workspaces/acme/records?kind=service", e.viewer, "", nil)
	items := r.json(t)["items"].([]any)
	require.Len(t, items, 3)
	keys := map[string]map[string]any{}
	for _, it := range items {
		m := it.(map[string]any)
		keys[m["key"].(string)] = m
	}
	require.Contains(t, keys, "10.0.0.7:443/tcp")
	require.Equal(t, "nginx 1.25", keys["10.0.0.7:443/tcp"]["version"])
	first := keys["10.0.0.8:80/tcp"]

	// The same body again changes only last_seen.
	time.Sleep(5 * time.Millisecond)
	r = e.do("POST", "/api/v1/workspaces/acme/records", e.operator, "application/x-ndjson", strings.NewReader(body))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, float64(8), r.json(t)["unchanged"])
	r = e.do("GET", "/api/v1/workspaces/acme/records?key=10.0.0.8:80/tcp", e.viewer, "", nil)
	again := r.json(t)["items"].([]any)[0].(map[string]any)
	require.Equal(t, first["first_seen"], again["first_seen"])
	require.Equal(t, first["id"], again["id"])
	require.NotEqual(t, first["last_seen"], again["last_seen"])
	delete(first, "last_seen")
	delete(again, "last_seen")
	require.Equal(t, first, again)

	// A pretty-printed document as application/json.
	var pretty bytes.Buffer
	require.NoError(t, json.Indent(&pretty, []byte(bulkCreate), "", "  "))
	r = e.do("POST", "/api/v1/workspaces/acme/records", e.operator, "application/json", &pretty)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, float64(6), r.json(t)["unchanged"])

	// Export as JSON Lines.
	r = e.do("GET", "/api/v1/workspaces/acme/records?format=jsonl", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "application/x-ndjson", r.header.Get("Content-Type"))
	require.Len(t, strings.Split(strings.TrimSpace(string(r.body)), "\n"), 8)

	r = e.do("GET", "/api/v1/workspaces/acme", e.viewer, "", nil)
	require.Equal(t, map[string]any{"host": float64(1), "domain": float64(2), "service": float64(3), "certificate": float64(0), "http": float64(0), "finding": float64(2)}, r.json(t)["record_counts"])
}

func TestIngestAllOrNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{MaxBodyBytes: 64 << 10, MaxLineBytes: 512})
	e.createWorkspace("acme", "10.0.0.0/24")
	count := func() int {
		r := e.do("GET", "/api/v1/workspaces/acme/records?format=jsonl", e.viewer, "", nil)
		return strings.Count(string(r.body), "\n")
	}
	good := `{"kind":"host","ip":"10.0.0.1"}` + "\n"
	tests := []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{"bad port", good + `{"kind":"service","ip":"10.0.0.1","port":70000}` + "\n", 400, "line 2: service.port: 70000"},
		{"bad json", good + good + `{"kind":"host","ip":` + "\n", 400, "line 3: malformed JSON"},
		{"no kind", `{"ip":"10.0.0.1"}`, 400, "line 1: kind: is missing"},
		{"bad bulk", good + `{"hosts":[{"ip":"10.0.0.1","services":[{"port":"x"}]}]}`, 400, "line 2: hosts[0].services[0]: service.port"},
		{"long line", good + `{"kind":"host","ip":"10.0.0.1","os":"` + strings.Repeat("x", 600) + `"}`, 413, "line 2: longer than the 512-byte line limit"},
		{"huge body", strings.Repeat(good, 3000), 413, "65536-byte limit"},
	}
	for _, tt := range tests {
		r := e.do("POST", "/api/v1/workspaces/acme/records", e.operator, "application/x-ndjson", strings.NewReader(tt.body))
		require.Equal(t, tt.status, r.status, "%s: %s", tt.name, r.body)
		require.Contains(t, r.errorMessage(t), tt.want, tt.name)
		require.Zero(t, count(), tt.name)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	e.createWorkspace("acme", "10.0.0.0/24")
	r := e.do("POST", "/api/v1/workspaces/acme/records", e.operator, "", strings.NewReader(`{"kind":"host","ip":"10.0.0.1"}`))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = e.do("GET", "/metrics", e.viewer, "", nil)
	require.Equal(t, http.StatusOK, r.status)
	body := string(r.body)
	require.Contains(t, body, `scanfleet_http_requests_total{code="201",method="POST",route="/api/v1/workspaces"} 1`)
	require.Contains(t, body, `scanfleet_ingest_records_total{outcome="new"} 1`)
	require.Contains(t, body, `scanfleet_tasks{status="created"} 0`)
}

func TestSubmitTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	e.createWorkspace("acme", "10.0.0.0/24", "*.acme.example")

	r := e.jsonReq("POST", "/api/v1/tasks", e.operator, map[string]any{"type": "noop", "workspace": "acme",
		"targets": []string{"10.0.0.7", "www.acme.example"}, "args": map[string]any{"records": 2}, "timeout": "30s"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var task scanfleet.Task
	require.NoError(t, json.Unmarshal(r.body, &task))
	require.Equal(t, scanfleet.TaskRequested, task.Status)
	require.Equal(t, scanfleet.Duration(30*time.Second), task.Timeout)
	var in scanfleet.TaskInput
	require.NoError(t, json.Unmarshal(task.Input, &in))
	require.Equal(t, []string{"10.0.0.7", "www.acme.example"}, in.Targets)
	require.Equal(t, []string{"10.0.0.0/24", "*.acme.example"}, in.Scope.Include)
	require.EqualValues(t, 2, in.Args["records"])
	stored, err := e.store.FindTask(context.Background(), task.ID)
	require.NoError(t, err)
	require.Equal(t, "", stored.ScanID)

	for _, tc := range []struct {
		body   map[string]any
		status int
		msg    string
	}{
		{map[string]any{"type": "noop", "workspace": "acme", "targets": []string{"192.168.0.1"}}, 400, "targets[0]: 192.168.0.1 matches no include entry"},
		{map[string]any{"type": "nmap", "workspace": "acme"}, 400, `unknown task type "nmap"`},
		{map[string]any{"type": "noop", "workspace": "nope"}, 404, `workspace "nope" not found`},
		{map[string]any{"type": "noop", "workspace": "acme", "args": map[string]any{"sleep": "soon"}}, 400, "args.sleep"},
		{map[string]any{"workspace": "acme"}, 400, "type: is empty"},
	} {
		r := e.jsonReq("POST", "/api/v1/tasks", e.operator, tc.body)
		require.Equal(t, tc.status, r.status, "%v: %s", tc.body, r.body)
		require.Contains(t, r.errorMessage(t), tc.msg)
	}
	r = e.jsonReq("POST", "/api/v1/tasks", e.viewer, map[string]any{"type": "noop", "workspace": "acme"})
	require.Equal(t, http.StatusForbidden, r.status)
}

func TestWebhookRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	e.createWorkspace("acme", "10.0.0.0/24")
	r := e.jsonReq("GET", "/api/v1/workspaces/acme/webhook", e.viewer, nil)
	require.Equal(t, http.StatusNotFound, r.status)
	r = e.jsonReq("PUT", "/api/v1/workspaces/acme/webhook", e.viewer, map[string]any{"url": "https://hooks.example/x"})
	require.Equal(t, http.StatusForbidden, r.status)
	r = e.jsonReq("PUT", "/api/v1/workspaces/acme/webhook", e.operator, map[string]any{"url": "gopher://x"})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.errorMessage(t), "url")
	r = e.jsonReq("PUT", "/api/v1/workspaces/acme/webhook", e.operator, map[string]any{"url": "https://hooks.example/x", "events": []string{"task.failed"}})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	secret, _ := r.json(t)["secret"].(string)
	require.NotEmpty(t, secret, "a made secret is shown once")
	r = e.jsonReq("GET", "/api/v1/workspaces/acme/webhook", e.viewer, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, string(r.body), secret)
	require.Equal(t, "https://hooks.example/x", r.json(t)["url"])
	r = e.jsonReq("GET", "/api/v1/workspaces/acme/webhook/deliveries", e.viewer, nil)
	require.Equal(t, http.StatusOK, r.status)
	r = e.jsonReq("DELETE", "/api/v1/workspaces/acme/webhook", e.operator, nil)
	require.Equal(t, http.StatusNoContent, r.status)
}

func TestScanHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sfhttp.Config{})
	e.createWorkspace("acme", "10.0.0.0/24")
	e.createWorkspace("beta", "10.1.0.0/24")
	r := e.jsonReq("POST", "/api/v1/scans", e.operator, map[string]any{"name": "nightly", "type": "noop", "workspaces": []string{"acme", "beta"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)
	r = e.jsonReq("POST", "/api/v1/scans/"+id+"/run", e.operator, nil)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var run struct{ Tasks []scanfleet.Task }
	require.NoError(t, json.Unmarshal(r.body, &run))
	require.Len(t, run.Tasks, 2)
	require.NoError(t, e.store.AppendTaskLogs(context.Background(), run.Tasks[0].ID, []string{"one", "two", "three"}, time.Now()))

	// Asked again while in flight: the same tasks, nothing new.
	r = e.jsonReq("POST", "/api/v1/scans/"+id+"/run", e.operator, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, true, r.json(t)["in_flight"])

	r = e.jsonReq("GET", "/api/v1/scans/"+id+"/history?logs=2", e.viewer, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var h struct {
		Scan  scanfleet.Scan `json:"scan"`
		Items []struct {
			ID        string
			Workspace string
			Input     json.RawMessage
			Logs      []scanfleet.TaskLog
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal(r.body, &h))
	require.Equal(t, "nightly", h.Scan.Name)
	require.Len(t, h.Items, 2)
	require.Greater(t, h.Items[0].ID, h.Items[1].ID, "newest first")
	for _, it := range h.Items {
		require.NotEmpty(t, it.Input)
		if it.ID == run.Tasks[0].ID {
			require.Len(t, it.Logs, 2)
			require.Equal(t, "one", it.Logs[0].Line)
		}
	}
	r = e.jsonReq("GET", "/api/v1/scans/"+id+"/history?workspace=beta&status=requested", e.viewer, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.NoError(t, json.Unmarshal(r.body, &h))
	require.Len(t, h.Items, 1)
	require.Equal(t, "beta", h.Items[0].Workspace)
	r = e.jsonReq("GET", "/api/v1/scans/"+id+"/history?logs=5000", e.viewer, nil)
	require.Equal(t, http.StatusBadRequest, r.status)
	r = e.jsonReq("GET", "/api/v1/scans/nope/history", e.viewer, nil)
	require.Equal(t, http.StatusNotFound, r.status)
}
