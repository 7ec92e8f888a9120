package html_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	sfhttp "github.com/scanfleet/scanfleet/http"
	"github.com/scanfleet/scanfleet/internal/servertest"
	"github.com/scanfleet/scanfleet/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { servertest.RemoveBinary() }))
}

// allParams is a task type with a parameter of every type, so that the
// generated scan form is exercised whole.
func allParams() *scanfleet.TaskType {
	lo, hi := int64(1), int64(100)
	return &scanfleet.TaskType{Name: "allparams", Description: "Every parameter type.", Params: []scanfleet.Param{
		{Name: "label", Type: scanfleet.ParamString, Mandatory: true, Description: "A label."},
		{Name: "rate", Type: scanfleet.ParamInteger, Default: float64(10), Min: &lo, Max: &hi, Description: "Packets per second."},
		{Name: "verbose", Type: scanfleet.ParamBoolean, Default: true, Description: "Talk more."},
		{Name: "words", Type: scanfleet.ParamList, Description: "Words to try."},
		{Name: "resolver", Type: scanfleet.ParamIP, Description: "A resolver."},
		{Name: "net", Type: scanfleet.ParamCIDR, Description: "A network."},
		{Name: "ports", Type: scanfleet.ParamPortList, Default: "80,443", Description: "Ports."},
		{Name: "wait", Type: scanfleet.ParamDuration, Description: "How long to wait."},
	}}
}

// env is a running API server with its UI, over a real SQLite store, with
// a token per role.
type env struct {
	t                       *testing.T
	url                     string
	srv                     *sfhttp.Server
	store                   scanfleet.Store
	admin, operator, viewer string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "ui.db")})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	reg, err := scanfleet.NewRegistry(scanfleet.NoopTaskType(), allParams())
	require.NoError(t, err)
	srv, err := sfhttp.NewServer(store, reg, sfhttp.Config{Addr: "127.0.0.1:0", MaxCloudBytes: 1 << 20})
	require.NoError(t, err)
	require.NoError(t, srv.Start(ctx))
	t.Cleanup(func() { require.NoError(t, srv.Stop(context.Background())) })
	e := &env{t: t, url: srv.URL(), srv: srv, store: store}
	e.admin = e.token("admin", scanfleet.RoleAdmin)
	e.operator = e.token("operator", scanfleet.RoleOperator)
	e.viewer = e.token("viewer", scanfleet.RoleViewer)
	return e
}

func (e *env) token(name string, role scanfleet.Role) string {
	e.t.Helper()
	tok, secret, err := scanfleet.NewToken(name, role, time.Now())
	require.NoError(e.t, err)
	require.NoError(e.t, e.store.CreateToken(context.Background(), tok))
	return secret
}

// client is a browser-like client: a cookie jar, no redirects followed.
type client struct {
	t  *testing.T
	e  *env
	hc *http.Client
}

func (e *env) client() *client {
	jar, err := cookiejar.New(nil)
	require.NoError(e.t, err)
	return &client{t: e.t, e: e, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// signIn returns a client signed in with the token.
func (e *env) signIn(secret string) *client {
	c := e.client()
	r := c.post("/signin", url.Values{"token": {secret}})
	require.Equal(e.t, http.StatusSeeOther, r.status, "%s", r.body)
	return c
}

type response struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(req *http.Request) response {
	c.t.Helper()
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (c *client) get(path string, header ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.e.url+path, nil)
	require.NoError(c.t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return c.do(req)
}

// post sends a form, with header pairs.
func (c *client) post(path string, form url.Values, header ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.e.url+path, strings.NewReader(form.Encode()))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return c.do(req)
}

func (e *env) createWorkspace(name string, include ...string) *scanfleet.Workspace {
	e.t.Helper()
	ws := &scanfleet.Workspace{ID: scanfleet.NewID(), Name: name, Scope: scanfleet.Scope{Include: include}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	require.NoError(e.t, ws.Validate())
	require.NoError(e.t, e.store.CreateWorkspace(context.Background(), ws))
	return ws
}

// newTask stores a created noop task in the workspace.
func (e *env) newTask(ws *scanfleet.Workspace, scanID string) *scanfleet.Task {
	e.t.Helper()
	task, err := scanfleet.NewTask(scanfleet.TaskSpec{Type: scanfleet.NoopTaskType(), Workspace: ws, ScanID: scanID,
		Args: map[string]any{"sleep": "0s", "records": int64(0)}}, time.Now())
	require.NoError(e.t, err)
	require.NoError(e.t, e.store.CreateTasks(context.Background(), []*scanfleet.Task{task}))
	return task
}

// enrol enrols a worker of the external pool and returns its id.
func (e *env) enrol(name string) string {
	e.t.Helper()
	ctx := context.Background()
	_, join, err := e.srv.NewJoinToken(ctx, name, "external", "", time.Hour)
	require.NoError(e.t, err)
	resp, err := e.srv.Enrol(ctx, sfhttp.EnrolRequest{JoinToken: join, Name: name, Pool: scanfleet.PoolExternal,
		Executors: []string{"noop"}, Capabilities: []scanfleet.Requirement{scanfleet.RequireQueueAccess}, Transport: "http", Concurrency: 2})
	require.NoError(e.t, err)
	return resp.WorkerID
}

// start routes and claims a task for the worker.
func (e *env) start(task *scanfleet.Task, workerID string) {
	e.t.Helper()
	ctx := context.Background()
	_, err := e.store.RouteTasks(ctx, 1000, time.Now())
	require.NoError(e.t, err)
	_, err = e.store.ClaimTask(ctx, task.ID, workerID, time.Minute, time.Now())
	require.NoError(e.t, err)
}
