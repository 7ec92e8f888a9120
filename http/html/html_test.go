package html_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

func TestSignIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client()

	// Pages need a session; the sign-in form remembers where to go.
	r := c.get("/tasks?status=failed")
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/signin?next="+url.QueryEscape("/tasks?status=failed"), r.header.Get("Location"))
	r = c.get("/signin?next=" + url.QueryEscape("/tasks?status=failed"))
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `name="next" value="/tasks?status=failed"`)
	// htmx is told where to go instead of getting the form as a fragment.
	r = c.get("/workers", "HX-Request", "true")
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, "/signin?next=%2Fworkers", r.header.Get("HX-Redirect"))

	r = c.post("/signin", url.Values{"token": {"sfk_not-a-token"}})
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Contains(t, r.body, "Unknown or revoked token.")
	require.Empty(t, r.header.Values("Set-Cookie"))
	r = c.post("/signin", url.Values{"token": {""}})
	require.Equal(t, http.StatusBadRequest, r.status)

	r = c.post("/signin", url.Values{"token": {e.operator}, "next": {"/tasks?status=failed"}})
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/tasks?status=failed", r.header.Get("Location"))
	cookie := r.header.Get("Set-Cookie")
	require.Contains(t, cookie, "scanfleet_session=")
	require.Contains(t, cookie, "HttpOnly")
	require.Contains(t, cookie, "SameSite=Strict")
	require.Contains(t, cookie, "Path=/")
	require.Contains(t, cookie, "Max-Age=43200")
	require.NotContains(t, cookie, e.operator)
	require.NotContains(t, cookie, scanfleet.HashToken(e.operator))

	r = c.get("/")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "<h1>Dashboard</h1>")
	require.Contains(t, r.body, `data-role="operator"`)

	// Sign-out ends the session on the server, not only in the browser.
	old := e.client()
	u, _ := url.Parse(e.url)
	old.hc.Jar.SetCookies(u, c.hc.Jar.Cookies(u))
	r = c.post("/signout", nil)
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, http.StatusSeeOther, old.get("/").status)

	// A redirect target is always on this site.
	for _, next := range []string{"//evil.example/x", "https://evil.example", `/\evil.example`} {
		r = e.client().post("/signin", url.Values{"token": {e.viewer}, "next": {next}})
		require.Equal(t, "/", r.header.Get("Location"), next)
	}
}

func TestRevokedTokenEndsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret := e.token("temp", scanfleet.RoleOperator)
	c := e.signIn(secret)
	require.Equal(t, http.StatusOK, c.get("/workers").status)
	toks, err := e.store.ListTokens(context.Background())
	require.NoError(t, err)
	for _, tok := range toks {
		if tok.Name == "temp" {
			require.NoError(t, e.store.DeleteToken(context.Background(), tok.ID))
		}
	}
	require.Equal(t, http.StatusSeeOther, c.get("/workers").status)
}

func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.signIn(e.admin)
	form := url.Values{"name": {"acme"}, "include": {"10.0.0.0/24"}}

	r := c.post("/workspaces", form, "Origin", "http://evil.example")
	require.Equal(t, http.StatusForbidden, r.status)
	require.Contains(t, r.body, "cross-origin request refused")
	r = c.post("/workspaces", form, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, r.status)
	// Sign-in is protected too, against logging a victim into an
	// attacker's account.
	r = e.client().post("/signin", url.Values{"token": {e.admin}}, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, r.status)
	_, err := e.store.FindWorkspace(context.Background(), "acme")
	require.Equal(t, scanfleet.ENOTFOUND, scanfleet.ErrorCode(err))

	// The same form from the site itself goes through.
	r = c.post("/workspaces", form, "Origin", e.url, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	_, err = e.store.FindWorkspace(context.Background(), "acme")
	require.NoError(t, err)
}

func TestViewerChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ws := e.createWorkspace("acme", "10.0.0.0/24")
	sc := &scanfleet.Scan{ID: scanfleet.NewID(), Name: "nightly", Type: "noop", Workspaces: []string{"acme"}, Enabled: true,
		CreatedAt: time.Now(), UpdatedAt: time.Now()}
	reg, _ := scanfleet.NewRegistry(scanfleet.NoopTaskType())
	require.NoError(t, sc.Validate(reg))
	require.NoError(t, e.store.CreateScan(ctx, sc))
	task := e.newTask(ws, "")
	v := e.signIn(e.viewer)

	// The viewer sees every page, without the controls that change things.
	for _, page := range []string{"/", "/workspaces", "/workspaces/acme", "/scans", "/scans/" + sc.ID, "/scans/new",
		"/tasks", "/tasks/" + task.ID, "/workers", "/inventory", "/attack"} {
		r := v.get(page)
		require.Equal(t, http.StatusOK, r.status, page)
		for _, control := range []string{"Create workspace", "Run now", ">Kill<", ">Disable<", "Upload", "Save", "Create scan", `action="/scans"`} {
			require.NotContains(t, r.body, control, "%s shows %q to a viewer", page, control)
		}
	}
	// And the handlers refuse, whatever a crafted request says.
	for _, path := range []string{"/workspaces", "/workspaces/acme", "/scans", "/scans/" + sc.ID, "/scans/" + sc.ID + "/enabled",
		"/scans/" + sc.ID + "/run", "/tasks/" + task.ID + "/cancel", "/attack"} {
		r := v.post(path, url.Values{"name": {"x"}, "type": {"noop"}, "workspaces": {"acme"}, "include": {"10.0.0.1"}, "enabled": {"false"}})
		require.Equal(t, http.StatusForbidden, r.status, path)
		require.Contains(t, r.body, "this needs the operator role", path)
	}
	got, err := e.store.FindScan(ctx, sc.ID)
	require.NoError(t, err)
	require.True(t, got.Enabled)
	require.Nil(t, got.LastRunAt)
	tk, err := e.store.FindTask(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, scanfleet.TaskRequested, tk.Status)
	wss, _, err := e.store.ListWorkspaces(ctx, scanfleet.Page{})
	require.NoError(t, err)
	require.Len(t, wss, 1)
	require.Equal(t, []string{"10.0.0.0/24"}, wss[0].Scope.Include)
}

func TestWorkspacePages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.signIn(e.operator)

	// A bad entry is named by its line, next to the scope field, and the
	// typed form comes back as it was.
	r := c.post("/workspaces", url.Values{"name": {"acme"}, "include": {"10.0.0.0/24\n\n10.0.0.0/33"}, "exclude": {""}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Regexp(t, `(?s)id="include".*10\.0\.0\.0/33</textarea>.*id="include-error"><p class="field-error" role="alert">line 3: &#34;10.0.0.0/33&#34;`, r.body)
	r = c.post("/workspaces", url.Values{"name": {"Acme Corp"}, "include": {"10.0.0.1"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Regexp(t, `id="name-error"><p class="field-error" role="alert">&#34;Acme Corp&#34; must be lower-case`, r.body)
	r = c.post("/workspaces", url.Values{"name": {"wide"}, "include": {"0.0.0.0/0"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "allow_broad")

	r = c.post("/workspaces", url.Values{"name": {"acme"}, "description": {"Acme's lab"}, "include": {"10.0.0.0/24\r\n*.Acme.Example."}, "exclude": {"10.0.0.5"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/workspaces/acme", r.header.Get("Location"))
	ws, err := e.store.FindWorkspace(context.Background(), "acme")
	require.NoError(t, err)
	require.Equal(t, []string{"10.0.0.0/24", "*.acme.example"}, ws.Scope.Include)
	require.Equal(t, []string{"10.0.0.5"}, ws.Scope.Exclude)

	r = c.post("/workspaces", url.Values{"name": {"acme"}, "include": {"10.0.0.1"}})
	require.Equal(t, http.StatusConflict, r.status)
	require.Regexp(t, `id="name-error"><p class="field-error" role="alert">[^<]*acme`, r.body)

	r = c.get("/workspaces")
	require.Contains(t, r.body, `<a href="/workspaces/acme">acme</a>`)
	r = c.get("/workspaces/acme?target=10.0.0.5")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "Out of scope")
	require.Contains(t, c.get("/workspaces/acme?target=www.acme.example").body, "In scope")

	// Edit the scope; a bad exclude line is shown under exclude.
	r = c.post("/workspaces/acme", url.Values{"description": {"x"}, "include": {"192.168.1.0/24"}, "exclude": {"not a host"}})
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Regexp(t, `id="exclude-error"><p class="field-error" role="alert">line 1: `, r.body)
	r = c.post("/workspaces/acme", url.Values{"description": {"lab"}, "include": {"192.168.1.0/24"}})
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	ws, err = e.store.FindWorkspace(context.Background(), "acme")
	require.NoError(t, err)
	require.Equal(t, "lab", ws.Description)
	require.Equal(t, []string{"192.168.1.0/24"}, ws.Scope.Include)
	require.Empty(t, ws.Scope.Exclude)
	require.Contains(t, c.get("/workspaces/acme?saved=1").body, "Saved.")
	require.Equal(t, http.StatusNotFound, c.get("/workspaces/nope").status)
}

func TestScanPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.createWorkspace("acme", "10.0.0.0/24")
	e.createWorkspace("beta", "10.1.0.0/24")
	c := e.signIn(e.operator)

	// The form is generated from the type's params.
	r := c.get("/scans/new?type=allparams")
	require.Equal(t, http.StatusOK, r.status)
	for _, input := range []string{
		`<input type="text" id="arg.label" name="arg.label" value="" required`,
		`<input type="number" id="arg.rate" name="arg.rate" value="" min="1" max="100" placeholder="10"`,
		`<input type="hidden" name="arg.verbose" value="false">`,
		`<input type="checkbox" id="arg.verbose" name="arg.verbose" value="true" checked>`,
		`<textarea id="arg.words" name="arg.words"`,
		`<input type="text" id="arg.ports" name="arg.ports" value="" placeholder="80,443"`,
		`<input type="text" id="arg.wait" name="arg.wait"`,
		`<option value="allparams" selected>allparams</option>`,
		`<input type="checkbox" name="workspaces" value="beta">`,
	} {
		require.Contains(t, r.body, input)
	}

	form := url.Values{"type": {"allparams"}, "name": {"full"}, "workspaces": {"acme", "beta"}, "arg.label": {"x"},
		"arg.rate": {"500"}, "arg.verbose": {"false", "true"}, "arg.words": {"a\nb\n\n"}, "arg.ports": {"22,80-81"},
		"arg.resolver": {"::ffff:10.0.0.53"}, "arg.net": {"10.0.0.7"}, "arg.wait": {"2s"}, "frequency": {"1h"}, "enabled": {"on"}}
	r = c.post("/scans", form)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Regexp(t, `(?s)id="arg.rate".*?<p class="field-error" role="alert">500 is more than the maximum 100</p>`, r.body)
	require.Contains(t, r.body, `value="500"`, "the typed value is kept")
	form.Set("arg.rate", "5")
	form.Set("frequency", "often")
	r = c.post("/scans", form)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, `&#34;often&#34; is not a duration`)
	form.Set("frequency", "1h")
	form.Set("cron", "@daily")
	r = c.post("/scans", form)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "set one or the other, not both")
	form.Del("cron")
	r = c.post("/scans", form)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	id := strings.TrimPrefix(r.header.Get("Location"), "/scans/")
	sc, err := e.store.FindScan(ctx, id)
	require.NoError(t, err)
	require.Equal(t, []string{"acme", "beta"}, sc.Workspaces)
	require.Equal(t, scanfleet.Duration(time.Hour), sc.Frequency)
	require.True(t, sc.Enabled)
	args, err := json.Marshal(sc.Args)
	require.NoError(t, err)
	require.JSONEq(t, `{"label":"x","rate":5,"verbose":true,"words":["a","b"],"ports":"22,80-81","resolver":"10.0.0.53","net":"10.0.0.7/32","wait":"2s"}`, string(args))
	r = c.post("/scans", form)
	require.Equal(t, http.StatusConflict, r.status)
	require.Regexp(t, `id="name-error"><p class="field-error" role="alert">scan &#34;full&#34; already exists`, r.body)

	// Edit: the stored values fill the form; unchecking a box sends only
	// its hidden "false".
	r = c.get("/scans/" + id)
	require.Contains(t, r.body, `<textarea id="arg.words" name="arg.words" rows="3" aria-describedby="arg.words-hint">a`+"\n"+`b</textarea>`)
	form.Set("arg.verbose", "false")
	form.Set("workspaces", "beta")
	form.Set("name", "renamed")
	r = c.post("/scans/"+id, form)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	sc, err = e.store.FindScan(ctx, id)
	require.NoError(t, err)
	require.Equal(t, "renamed", sc.Name)
	require.Equal(t, false, sc.Args["verbose"])
	require.Equal(t, []string{"beta"}, sc.Workspaces)

	// Disable, enable, run now.
	r = c.post("/scans/"+id+"/enabled", url.Values{"enabled": {"false"}, "back": {"/scans"}})
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/scans", r.header.Get("Location"))
	sc, _ = e.store.FindScan(ctx, id)
	require.False(t, sc.Enabled)
	require.Contains(t, c.get("/scans").body, ">Enable</button>")
	r = c.post("/scans/"+id+"/run", nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/tasks?scan="+id, r.header.Get("Location"))
	tasks, _, err := e.store.ListTasks(ctx, scanfleet.TaskFilter{ScanID: id})
	require.NoError(t, err)
	require.Len(t, tasks, 1)
	require.Equal(t, "beta", tasks[0].Workspace)
	r = c.get("/tasks?scan=" + id)
	require.Contains(t, r.body, `id="task-`+tasks[0].ID+`"`)

	require.Equal(t, http.StatusNotFound, c.post("/scans/nope/run", nil).status)
	require.Equal(t, http.StatusNotFound, c.get("/scans/nope").status)
}

var rowID = regexp.MustCompile(`<tr id="task-([0-9a-f-]{36})">`)

func TestScanHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	acme := e.createWorkspace("acme", "10.0.0.0/24")
	beta := e.createWorkspace("beta", "10.1.0.0/24")
	var ids []string
	for i := 0; i < 30; i++ {
		ws := acme
		if i%3 == 0 {
			ws = beta
		}
		ids = append(ids, e.newTask(ws, "").ID)
		time.Sleep(time.Millisecond) // distinct creation times
	}
	worker := e.enrol("w1")
	e.start(&scanfleet.Task{ID: ids[29]}, worker)
	require.NoError(t, e.store.AppendTaskLogs(ctx, ids[29], []string{"hello <b>", "second line"}, time.Now()))
	out := json.RawMessage(`{"open":3}`)
	msg := "exit status 2"
	_, err := e.store.FinishTask(ctx, ids[29], worker, scanfleet.TaskChange{Status: scanfleet.TaskFailed, Output: out, Error: &msg}, time.Now())
	require.NoError(t, err)
	e.start(&scanfleet.Task{ID: ids[28]}, worker)
	v := e.signIn(e.viewer)

	// 25 a page, newest first, and an older page.
	r := v.get("/tasks")
	require.Equal(t, http.StatusOK, r.status)
	rows := rowID.FindAllStringSubmatch(r.body, -1)
	require.Len(t, rows, 25)
	require.Equal(t, ids[29], rows[0][1])
	require.Equal(t, ids[5], rows[24][1])
	older := regexp.MustCompile(`<a href="(/tasks\?cursor=[^"]+)" rel="next">Older</a>`).FindStringSubmatch(r.body)
	require.NotNil(t, older)
	r = v.get(strings.ReplaceAll(older[1], "&amp;", "&"))
	rows = rowID.FindAllStringSubmatch(r.body, -1)
	require.Len(t, rows, 5)
	require.Equal(t, ids[4], rows[0][1])
	require.NotContains(t, r.body, `rel="next"`)

	// Filters.
	count := func(path string) int {
		r := v.get(path)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", path, r.body)
		return len(rowID.FindAllString(r.body, -1))
	}
	require.Equal(t, 1, count("/tasks?status=failed"))
	require.Equal(t, 1, count("/tasks?status=started"))
	require.Equal(t, 2, count("/tasks?status=started&status=failed"))
	require.Equal(t, 10, count("/tasks?workspace=beta"))
	future := time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04")
	require.Equal(t, 0, count("/tasks?since="+future))
	require.Equal(t, 25, count("/tasks?until="+future))
	r = v.get("/tasks?since=yesterday")
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, "&#34;yesterday&#34; is not a time")

	// A row expands (htmx) into input, output, error, progress and log; as
	// a page it is the same panel.
	r = v.get("/tasks/"+ids[29], "HX-Request", "true")
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, r.body, "<html")
	for _, want := range []string{`&#34;open&#34;: 3`, "exit status 2", "hello &lt;b&gt;", "second line", "status-failed",
		`&#34;task_id&#34;: &#34;` + ids[29], "<progress"} {
		require.Contains(t, r.body, want)
	}
	require.NotContains(t, r.body, "data-log-src", "an ended task's log is whole")
	require.Contains(t, r.body, `<span id="row-status-`+ids[29]+`" hx-swap-oob="true">`, "the row shows the panel's status")
	page := v.get("/tasks/" + ids[29])
	require.Contains(t, page.body, "<html")
	require.NotContains(t, page.body, "hx-swap-oob")
	require.Contains(t, page.body, "second line")

	// A running task's panel polls its status and follows its log.
	r = v.get("/tasks/"+ids[28], "HX-Request", "true")
	require.Contains(t, r.body, `hx-get="/tasks/`+ids[28]+`/status" hx-trigger="every 2s"`)
	require.Contains(t, r.body, `data-log-src="/tasks/`+ids[28]+`/logs?after=0"`)

	// The live log is the API's event stream.
	r = v.get("/tasks/" + ids[29] + "/logs?after=1")
	require.Equal(t, "text/event-stream", r.header.Get("Content-Type"))
	require.Contains(t, r.body, "id: 2\nevent: log\ndata: ")
	require.NotContains(t, r.body, "hello")
	require.Contains(t, r.body, "event: end\ndata: {\"error\":\"exit status 2\",\"status\":\"failed\"}")
	require.Equal(t, http.StatusNotFound, v.get("/tasks/"+scanfleet.NewID()+"/logs").status)
	require.Equal(t, http.StatusNotFound, v.get("/tasks/"+scanfleet.NewID()).status)
}

func TestKill(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ws := e.createWorkspace("acme", "10.0.0.0/24")
	waiting := e.newTask(ws, "")
	running := e.newTask(ws, "")
	worker := e.enrol("w1")
	e.start(running, worker)
	c := e.signIn(e.operator)

	// A task not started yet is cancelled at once; a plain form goes back
	// to the task.
	r := c.post("/tasks/"+waiting.ID+"/cancel", nil)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	require.Equal(t, "/tasks/"+waiting.ID, r.header.Get("Location"))
	got, err := e.store.FindTask(ctx, waiting.ID)
	require.NoError(t, err)
	require.Equal(t, scanfleet.TaskCancelled, got.Status)

	// A running one is flagged for its worker; htmx gets the new status.
	r = c.post("/tasks/"+running.ID+"/cancel", nil, "HX-Request", "true")
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `id="status-`+running.ID+`"`)
	require.Contains(t, r.body, "kill requested")
	got, err = e.store.FindTask(ctx, running.ID)
	require.NoError(t, err)
	require.True(t, got.CancelRequested)

	// An ended task cannot be killed.
	r = c.post("/tasks/"+waiting.ID+"/cancel", nil)
	require.Equal(t, http.StatusConflict, r.status)
	r = c.post("/tasks/"+waiting.ID+"/cancel", nil, "HX-Request", "true")
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, r.body, `class="alert"`)
}

func TestWorkersPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ws := e.createWorkspace("acme", "10.0.0.0/24")
	task := e.newTask(ws, "")
	id := e.enrol("edge-1")
	e.start(task, id)
	v := e.signIn(e.viewer)
	r := v.get("/workers")
	require.Equal(t, http.StatusOK, r.status)
	for _, want := range []string{"edge-1", id, "external", "queue_access", "noop", "state-idle", "/ 2", `<a href="/tasks/` + task.ID + `">`,
		"No launcher attempts"} {
		require.Contains(t, r.body, want)
	}
	r = v.get("/")
	require.Regexp(t, `data-pool-online="external">1</td><td>1</td>`, r.body)
}

func TestInventory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ws := e.createWorkspace("acme", "10.0.0.0/24")
	e.createWorkspace("beta", "10.1.0.0/24")
	task := e.newTask(ws, "")
	var recs []scanfleet.Record
	for _, m := range []map[string]any{
		{"kind": "host", "ip": "10.0.0.7", "os": "Linux"},
		{"kind": "service", "ip": "10.0.0.7", "port": float64(443), "name": "https", "banner": `<script>alert(1)</script>`},
		{"kind": "domain", "name": "www.acme.example"},
		{"kind": "finding", "host": "10.0.0.7", "name": "Weak TLS", "severity": "medium"},
	} {
		rec, err := scanfleet.NewRecord(m)
		require.NoError(t, err)
		recs = append(recs, rec)
	}
	_, err := e.store.UpsertRecords(ctx, "acme", task.ID, recs, time.Now())
	require.NoError(t, err)
	other, err := scanfleet.NewRecord(map[string]any{"kind": "host", "ip": "10.1.0.9"})
	require.NoError(t, err)
	_, err = e.store.UpsertRecords(ctx, "beta", "", []scanfleet.Record{other}, time.Now())
	require.NoError(t, err)
	v := e.signIn(e.viewer)

	rows := func(path string) int {
		r := v.get(path)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", path, r.body)
		return strings.Count(r.body, "<tr data-kind=")
	}
	require.Equal(t, 5, rows("/inventory"))
	require.Equal(t, 4, rows("/inventory?workspace=acme"))
	require.Equal(t, 2, rows("/inventory?kind=host"))
	require.Equal(t, 2, rows("/inventory?workspace=acme&q=10.0.0.7"))
	require.Equal(t, 4, rows("/inventory?task="+task.ID))
	r := v.get("/inventory?workspace=acme&kind=service")
	require.Contains(t, r.body, `<code>10.0.0.7:443/tcp</code>`)
	require.Contains(t, r.body, `&lt;script&gt;alert(1)&lt;/script&gt;`)
	require.NotContains(t, r.body, `<script>alert(1)`)
	require.Contains(t, r.body, `<a href="/tasks/`+task.ID+`" title="first seen by">`)
	require.Contains(t, r.body, `href="/inventory/export?format=csv&amp;kind=service&amp;workspace=acme"`)
	require.Equal(t, http.StatusBadRequest, v.get("/inventory?kind=vuln").status)

	// Exports: JSON Lines as the records API writes them, and CSV.
	r = v.get("/inventory/export?workspace=acme&format=jsonl")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "application/x-ndjson", r.header.Get("Content-Type"))
	require.Contains(t, r.header.Get("Content-Disposition"), `filename="scanfleet-records-acme.jsonl"`)
	lines := strings.Split(strings.TrimSpace(r.body), "\n")
	require.Len(t, lines, 4)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.Equal(t, "host", first["kind"])
	require.Equal(t, task.ID, first["first_task"])
	require.Equal(t, "acme", first["workspace"])

	r = v.get("/inventory/export?format=csv&kind=service")
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/csv; charset=utf-8", r.header.Get("Content-Type"))
	all, err := csv.NewReader(strings.NewReader(r.body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, []string{"kind", "key", "workspace", "first_seen", "last_seen", "first_task", "last_task", "id", "fields"}, all[0])
	require.Equal(t, []string{"service", "10.0.0.7:443/tcp", "acme"}, all[1][:3])
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(all[1][8]), &fields))
	require.Equal(t, "https", fields["name"])
	require.Equal(t, float64(443), fields["port"])
	require.Equal(t, http.StatusBadRequest, v.get("/inventory/export?format=xml").status)
	require.Equal(t, http.StatusNotFound, v.get("/inventory/export?workspace=nope").status)

	// The dashboard shows the newest records.
	r = v.get("/")
	require.Contains(t, r.body, "<code>10.1.0.9</code>")
}

const cloudEnv = `{"vms":[{"vm_id":"vm-a","name":"jump","tags":["ssh"]},{"vm_id":"vm-b","name":"app","tags":["app"]},{"vm_id":"vm-c","name":"db","tags":["db"]}],
"fw_rules":[{"fw_id":"fw-1","source_tag":"ssh","dest_tag":"app"},{"fw_id":"fw-2","source_tag":"app","dest_tag":"db"}]}`

func upload(t *testing.T, c *client, ws, body string) response {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	require.NoError(t, mw.WriteField("workspace", ws))
	fw, err := mw.CreateFormFile("env", "env.json")
	require.NoError(t, err)
	_, err = fw.Write([]byte(body))
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	req, err := http.NewRequest(http.MethodPost, c.e.url+"/attack", &buf)
	require.NoError(t, err)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return c.do(req)
}

func TestAttackSurface(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createWorkspace("acme", "10.0.0.0/24")
	c := e.signIn(e.operator)

	r := c.get("/attack")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "acme has no cloud environment yet")

	r = upload(t, c, "acme", `{"vms":[{"vm_id":"a","tags":["x"]}],"fw_rules":[`)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Regexp(t, `id="env-error"><p class="field-error" role="alert">cloud environment: `, r.body)
	r = upload(t, c, "acme", strings.Repeat(" ", 1<<20+10)+cloudEnv)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)

	r = upload(t, c, "acme", cloudEnv)
	require.Equal(t, http.StatusSeeOther, r.status, r.body)
	r = c.get(r.header.Get("Location"))
	require.Contains(t, r.body, "Environment stored.")
	require.Contains(t, r.body, "3 VMs and 2 rules")
	require.Contains(t, r.body, `<option value="vm-c">db</option>`)

	r = c.get("/attack?workspace=acme&vm=vm-c")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "2 VMs can attack <code>vm-c</code> (db)")
	require.Contains(t, r.body, "<li><code>vm-a</code> jump</li><li><code>vm-b</code> app</li>")
	r = c.get("/attack?workspace=acme&vm=vm-c&mode=direct")
	require.Contains(t, r.body, "1 VMs can attack <code>vm-c</code>")
	r = c.get("/attack?workspace=acme&vm=vm-a")
	require.Contains(t, r.body, "None: no rule lets another VM reach it.")
	r = c.get("/attack?workspace=acme&vm=vm-z")
	require.Equal(t, http.StatusNotFound, r.status)
	require.Contains(t, r.body, `vm &#34;vm-z&#34; not found`)
	require.Equal(t, http.StatusNotFound, c.get("/attack?workspace=nope").status)
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ws := e.createWorkspace("acme", "10.0.0.0/24")
	e.newTask(ws, "")
	failed := e.newTask(ws, "")
	worker := e.enrol("w1")
	e.start(failed, worker)
	msg := "executor crashed"
	_, err := e.store.FinishTask(ctx, failed.ID, worker, scanfleet.TaskChange{Status: scanfleet.TaskFailed, Error: &msg}, time.Now())
	require.NoError(t, err)
	r := e.signIn(e.viewer).get("/")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `data-status-count="failed">1<`)
	require.Contains(t, r.body, `data-status-count="requested">1<`)
	require.Contains(t, r.body, "executor crashed")
	require.Contains(t, r.body, "No records seen in the last 24 hours.")
}

func TestStaticAndNotFound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.client()
	// Static files need no session; htmx is the pinned 2.0.11 build.
	r := c.get("/static/htmx.min.js")
	require.Equal(t, http.StatusOK, r.status)
	sum := sha256.Sum256([]byte(r.body))
	require.Equal(t, "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717", hex.EncodeToString(sum[:]))
	r = c.get("/static/style.css")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.header.Get("Content-Type"), "text/css")

	s := e.signIn(e.viewer)
	r = s.get("/no/such/page")
	require.Equal(t, http.StatusNotFound, r.status)
	require.Contains(t, r.body, "no page at /no/such/page")
	require.Contains(t, r.header.Get("Content-Security-Policy"), "script-src 'self'")
	// Under /api the API answers, in JSON, session or not.
	for _, path := range []string{"/api/v2/x", "/api/v1/nope"} {
		r = s.get(path)
		require.Equal(t, http.StatusNotFound, r.status, path)
		require.Equal(t, "application/json", r.header.Get("Content-Type"), path)
	}
	// The API still wants its bearer token: a session is not one.
	require.Equal(t, http.StatusUnauthorized, s.get("/api/v1/workspaces").status)
	require.Equal(t, http.StatusOK, s.get("/api/v1/health").status)
	_ = fmt.Sprint()
}
