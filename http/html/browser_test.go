package html_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/internal/servertest"
)

// The browser tests drive Debian's Chromium, headless, against the real
// scanfleet binary as a newcomer runs it: "scanfleet server" on port 0,
// signed in with the admin token it prints. They skip when Chromium is not
// installed (apt-get install chromium) and under -short.

// chromiumPath returns the browser to drive, "" when none is installed.
func chromiumPath() string {
	if p := os.Getenv("SCANFLEET_CHROMIUM"); p != "" {
		return p
	}
	// Debian's /usr/bin/chromium is a shell wrapper; the binary behind it
	// takes the same flags.
	for _, p := range []string{"/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	return ""
}

// newcomer runs "scanfleet server" as the README's first command does, on
// port 0 and a fresh data directory, and returns its URL and admin token.
func newcomer(t *testing.T) (url, token string) {
	t.Helper()
	p := servertest.Start(t, nil, "", "--addr", "127.0.0.1:0", "--nats-addr", "127.0.0.1:-1", "--data-dir", t.TempDir())
	return p.URL, p.Token
}

// browser starts a headless Chromium with a fresh profile and returns a
// tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("Chromium is not installed (apt-get install -y chromium); skipping the browser tests")
	}
	if testing.Short() {
		t.Skip("browser tests are skipped under -short")
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.NoFirstRun, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-default-browser-check", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "start Chromium at %s", path)
	return ctx
}

// page runs steps within a minute.
func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Do(tctx, steps...))
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	require.NoError(t, err, js)
	return v
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	return loc
}

// screenshot saves the page under the test's temp dir, and also under
// $SCANFLEET_SCREENSHOTS when set, to look at after the run.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	dirs := []string{t.TempDir()}
	if d := os.Getenv("SCANFLEET_SCREENSHOTS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		require.NoError(t, os.WriteFile(filepath.Join(d, name+".png"), png, 0o644))
	}
	t.Logf("screenshot %s.png in %s", name, strings.Join(dirs, " and "))
}

// signIn signs in through the form.
func signIn(t *testing.T, ctx context.Context, url, token string) {
	t.Helper()
	run(t, ctx,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), token),
		chromedp.Click(chromedp.CSS(`form[action="/signin"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form.signout`)),
	)
}

// createScan fills the scan form generated from the noop type's params and
// returns the new scan's id.
func createScan(t *testing.T, ctx context.Context, url, name, ws string, args map[string]string) string {
	t.Helper()
	run(t, ctx,
		chromedp.Navigate(url+"/scans/new"),
		chromedp.WaitVisible(chromedp.CSS(`#pick-type`)),
		// Choosing the type reloads the form through htmx.
		chromedp.SetValue(chromedp.CSS(`#pick-type`), "noop"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("pick-type").dispatchEvent(new Event("change", {bubbles: true})); undefined`),
		chromedp.WaitVisible(chromedp.CSS(`input[name="arg.records"]`)),
		chromedp.SendKeys(chromedp.CSS(`#name`), name),
		chromedp.Click(chromedp.CSS(`input[name=workspaces][value="`+ws+`"]`)),
	)
	for k, v := range args {
		run(t, ctx, chromedp.SendKeys(chromedp.CSS(`input[name="arg.`+k+`"]`), v))
	}
	run(t, ctx,
		chromedp.Click(chromedp.CSS(`#scan-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/run"]`)),
	)
	m := regexp.MustCompile(`/scans/([0-9a-f-]{36})`).FindStringSubmatch(location(t, ctx))
	require.NotNil(t, m, location(t, ctx))
	return m[1]
}

// runAndExpand runs the scan now and expands its task's row in the
// history; it returns the task's id.
func runAndExpand(t *testing.T, ctx context.Context) string {
	t.Helper()
	run(t, ctx,
		chromedp.Click(chromedp.CSS(`form[action$="/run"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`a.task-link`)),
		chromedp.Click(chromedp.CSS(`a.task-link`)),
		chromedp.WaitVisible(chromedp.CSS(`.task-panel .task-status`)),
	)
	id := eval[string](t, ctx, `document.querySelector(".task-panel .task-status").id.replace("status-", "")`)
	require.Len(t, id, 36)
	return id
}

func api(t *testing.T, url, token, method, path string, body any) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	require.Less(t, resp.StatusCode, 300, "%s %s: %v", method, path, m)
	return m
}

// TestBrowser is the newcomer's whole path in a real browser: sign in,
// create a workspace and a scan, run it and watch it finish, browse its
// records, kill a long task, and see that a viewer changes nothing.
func TestBrowser(t *testing.T) {
	ctx := browser(t)
	url, admin := newcomer(t)

	// Sign in with the printed token.
	signIn(t, ctx, url, admin)
	require.Equal(t, url+"/", location(t, ctx))
	screenshot(t, ctx, "dashboard")

	// A workspace whose scope is 127.0.0.1; a bad entry first, to see the
	// message next to the field.
	run(t, ctx,
		chromedp.Navigate(url+"/workspaces"),
		chromedp.SendKeys(chromedp.CSS(`#name`), "lab"),
		chromedp.SendKeys(chromedp.CSS(`#include`), "127.0.0.1/40"),
		chromedp.Click(chromedp.CSS(`form[action="/workspaces"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#include-error .field-error`)),
	)
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#include-error .field-error`)))
	require.NoError(t, err)
	require.Contains(t, msg, `line 1: "127.0.0.1/40"`)
	screenshot(t, ctx, "workspace-error")
	run(t, ctx,
		chromedp.SetValue(chromedp.CSS(`#include`), "127.0.0.1"),
		chromedp.Click(chromedp.CSS(`form[action="/workspaces"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#h-scope`)),
	)
	require.Equal(t, url+"/workspaces/lab", location(t, ctx))

	// A noop scan, run now: the task reaches finished while the page
	// watches, and its records appear.
	createScan(t, ctx, url, "smoke", "lab", map[string]string{"records": "5"})
	screenshot(t, ctx, "scan")
	task := runAndExpand(t, ctx)
	run(t, ctx, chromedp.WaitVisible(chromedp.CSS(`#status-`+task+`[data-status="finished"]`)))
	require.Eventually(t, func() bool {
		return eval[string](t, ctx, `document.querySelector("#row-status-`+task+` .status").textContent`) == "finished"
	}, 10*time.Second, 100*time.Millisecond, "the row's status follows the panel's")
	require.Eventually(t, func() bool {
		return strings.Contains(eval[string](t, ctx, `document.getElementById("log-`+task+`").textContent`), "noop: emitted 5 records")
	}, 30*time.Second, 200*time.Millisecond, "the log shows the task's last line")
	screenshot(t, ctx, "history-finished")
	run(t, ctx,
		chromedp.Click(chromedp.CSS(`#status-`+task+` a[href^="/inventory?task="]`)),
		chromedp.WaitVisible(chromedp.CSS(`table.records`)),
	)
	require.Equal(t, 5, eval[int](t, ctx, `document.querySelectorAll("tr[data-kind=host]").length`))
	screenshot(t, ctx, "inventory")

	// Kill a task that would sleep an hour: it ends cancelled.
	createScan(t, ctx, url, "sleeper", "lab", map[string]string{"sleep": "1h"})
	task = runAndExpand(t, ctx)
	run(t, ctx, chromedp.WaitVisible(chromedp.CSS(`#status-`+task+`[data-status="started"]`)))
	require.Eventually(t, func() bool {
		return strings.Contains(eval[string](t, ctx, `document.getElementById("log-`+task+`").textContent`), "noop: sleeping 1h0m0s")
	}, 30*time.Second, 200*time.Millisecond, "the live log shows the running task's line")
	run(t, ctx,
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; undefined`),
		chromedp.Click(chromedp.CSS(`#status-`+task+` button.danger`)),
		chromedp.WaitVisible(chromedp.CSS(`#status-`+task+`[data-status="cancelled"]`)),
	)
	screenshot(t, ctx, "killed")
	got := api(t, url, admin, "GET", "/api/v1/tasks/"+task, nil)
	require.Equal(t, "cancelled", got["status"])

	// A viewer sees the same pages without a control, and a forged
	// request from the page is refused.
	viewer := api(t, url, admin, "POST", "/api/v1/tokens", map[string]any{"name": "auditor", "role": "viewer"})["token"].(string)
	run(t, ctx, chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	signIn(t, ctx, url, viewer)
	run(t, ctx, chromedp.Navigate(url+"/scans"), chromedp.WaitVisible(chromedp.CSS(`tr[data-scan="smoke"]`)))
	require.Equal(t, 0, eval[int](t, ctx, `document.querySelectorAll("form[method=post]:not(.signout)").length`))
	screenshot(t, ctx, "viewer-scans")
	scans := api(t, url, admin, "GET", "/api/v1/scans", nil)["items"].([]any)
	var smoke string
	for _, s := range scans {
		if s.(map[string]any)["name"] == "smoke" {
			smoke = s.(map[string]any)["id"].(string)
		}
	}
	status := eval[int](t, ctx, `fetch("/scans/`+smoke+`/run", {method: "POST"}).then(r => r.status)`)
	require.Equal(t, http.StatusForbidden, status)
	run(t, ctx, chromedp.Navigate(url+"/tasks/"+task), chromedp.WaitVisible(chromedp.CSS(`.task-panel`)))
	require.Equal(t, 0, eval[int](t, ctx, `document.querySelectorAll("button.danger").length`))
	tasks := api(t, url, admin, "GET", "/api/v1/tasks?scan="+smoke, nil)["items"].([]any)
	require.Len(t, tasks, 1, "the viewer's forged run made no task")
}
