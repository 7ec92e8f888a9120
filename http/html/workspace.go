package html

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/scanfleet/scanfleet"
)

// workspaceForm is the workspace form as typed, kept to show it again
// with its errors.
type workspaceForm struct {
	Name, Description, Include, Exclude string
	AllowBroad                          bool
	Errors                              formErrors
}

type workspacesData struct {
	Workspaces []*scanfleet.Workspace
	Next       string
	Form       workspaceForm
}

func (u *UI) handleWorkspaces(w http.ResponseWriter, r *http.Request, s *session) error {
	return u.showWorkspaces(w, r, s, http.StatusOK, workspaceForm{})
}

func (u *UI) showWorkspaces(w http.ResponseWriter, r *http.Request, s *session, status int, form workspaceForm) error {
	items, next, err := u.b.ListWorkspaces(r.Context(), scanfleet.Page{Cursor: r.URL.Query().Get("cursor"), Limit: 100})
	if err != nil {
		return err
	}
	u.render(w, r, status, "workspaces", s, "Workspaces", workspacesData{Workspaces: items, Next: next, Form: form})
	return nil
}

// scopeLines splits a textarea into scope entries, one per line, and
// remembers each entry's line for error messages.
func scopeLines(text string) (entries []string, lines []int) {
	entries = []string{}
	for i, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			entries = append(entries, l)
			lines = append(lines, i+1)
		}
	}
	return entries, lines
}

var scopeIndex = regexp.MustCompile(`^scope\.(include|exclude)\[(\d+)\]: (.*)$`)

// scopeError files a scope error under its textarea, naming the line.
func (fe formErrors) scope(err error, include, exclude []int) {
	m := scopeIndex.FindStringSubmatch(scanfleet.ErrorMessage(err))
	if m == nil || scanfleet.ErrorCode(err) != scanfleet.EINVALID {
		fe.add(err, map[string]string{"name": "name", "description": "description", "scope": "include",
			"scope.include": "include", "scope.exclude": "exclude"})
		return
	}
	lines := include
	if m[1] == "exclude" {
		lines = exclude
	}
	i, _ := strconv.Atoi(m[2])
	if i < len(lines) {
		fe[m[1]] = "line " + strconv.Itoa(lines[i]) + ": " + m[3]
	} else {
		fe[m[1]] = m[3]
	}
}

func readWorkspaceForm(r *http.Request) (workspaceForm, scanfleet.Scope, []int, []int) {
	f := workspaceForm{
		Name: strings.TrimSpace(r.PostFormValue("name")), Description: r.PostFormValue("description"),
		Include: r.PostFormValue("include"), Exclude: r.PostFormValue("exclude"),
		AllowBroad: r.PostFormValue("allow_broad") == "on", Errors: formErrors{},
	}
	inc, incLines := scopeLines(f.Include)
	exc, excLines := scopeLines(f.Exclude)
	return f, scanfleet.Scope{Include: inc, Exclude: exc, AllowBroad: f.AllowBroad}, incLines, excLines
}

func (u *UI) handleCreateWorkspace(w http.ResponseWriter, r *http.Request, s *session) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<20)
	f, scope, incLines, excLines := readWorkspaceForm(r)
	ws := &scanfleet.Workspace{Name: f.Name, Description: f.Description, Scope: scope}
	if err := u.b.CreateWorkspace(r.Context(), ws); err != nil {
		code := scanfleet.ErrorCode(err)
		if code != scanfleet.EINVALID && code != scanfleet.ECONFLICT {
			return err
		}
		f.Errors.scope(err, incLines, excLines)
		return u.showWorkspaces(w, r, s, scanfleet.HTTPStatus(code), f)
	}
	http.Redirect(w, r, "/workspaces/"+ws.Name, http.StatusSeeOther)
	return nil
}

type workspaceData struct {
	Workspace *scanfleet.Workspace
	Counts    []kindCount
	Scans     []*scanfleet.Scan
	Tasks     []*scanfleet.Task
	Cloud     *scanfleet.CloudEnv
	Form      workspaceForm
	Saved     bool
	// Check is the scope check of ?target=, when asked.
	Target string
	Check  *scanfleet.ScopeDecision
}

type kindCount struct {
	Kind  scanfleet.RecordKind
	Count int64
}

func (u *UI) handleWorkspace(w http.ResponseWriter, r *http.Request, s *session) error {
	ws, err := u.b.FindWorkspace(r.Context(), r.PathValue("ws"))
	if err != nil {
		return err
	}
	form := workspaceForm{Description: ws.Description, Include: strings.Join(ws.Scope.Include, "\n"),
		Exclude: strings.Join(ws.Scope.Exclude, "\n"), AllowBroad: ws.Scope.AllowBroad}
	return u.showWorkspace(w, r, s, http.StatusOK, ws, form, r.URL.Query().Get("saved") == "1")
}

func (u *UI) showWorkspace(w http.ResponseWriter, r *http.Request, s *session, status int, ws *scanfleet.Workspace, form workspaceForm, saved bool) error {
	ctx := r.Context()
	d := workspaceData{Workspace: ws, Form: form, Saved: saved}
	counts, err := u.b.CountRecords(ctx, ws.Name)
	if err != nil {
		return err
	}
	for _, k := range scanfleet.RecordKinds {
		d.Counts = append(d.Counts, kindCount{k, counts[k]})
	}
	if d.Scans, _, err = u.b.ListScans(ctx, scanfleet.ScanFilter{Workspace: ws.Name, Page: scanfleet.Page{Limit: 100}}); err != nil {
		return err
	}
	if d.Tasks, _, err = u.b.ListTasks(ctx, scanfleet.TaskFilter{Workspace: ws.Name, Page: scanfleet.Page{Limit: 10}}); err != nil {
		return err
	}
	if d.Cloud, err = u.b.GetCloud(ctx, ws.Name); err != nil && scanfleet.ErrorCode(err) != scanfleet.ENOTFOUND {
		return err
	}
	if d.Target = strings.TrimSpace(r.URL.Query().Get("target")); d.Target != "" {
		if m, err := ws.Scope.Compile(); err == nil {
			dec := m.Check(d.Target)
			d.Check = &dec
		}
	}
	u.render(w, r, status, "workspace", s, "Workspace "+ws.Name, d)
	return nil
}

func (u *UI) handleUpdateWorkspace(w http.ResponseWriter, r *http.Request, s *session) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<20)
	ctx := r.Context()
	name := r.PathValue("ws")
	f, scope, incLines, excLines := readWorkspaceForm(r)
	if _, err := u.b.UpdateWorkspace(ctx, name, scanfleet.WorkspaceUpdate{Description: &f.Description, Scope: &scope}); err != nil {
		if scanfleet.ErrorCode(err) != scanfleet.EINVALID {
			return err
		}
		ws, ferr := u.b.FindWorkspace(ctx, name)
		if ferr != nil {
			return ferr
		}
		f.Errors.scope(err, incLines, excLines)
		return u.showWorkspace(w, r, s, http.StatusBadRequest, ws, f, false)
	}
	http.Redirect(w, r, "/workspaces/"+name+"?saved=1", http.StatusSeeOther)
	return nil
}
