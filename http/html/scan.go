package html

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

type scansData struct {
	Scans []*scanfleet.Scan
	Next  string
	Query map[string][]string
}

func (u *UI) handleScans(w http.ResponseWriter, r *http.Request, s *session) error {
	items, next, err := u.b.ListScans(r.Context(), scanfleet.ScanFilter{Page: scanfleet.Page{Cursor: r.URL.Query().Get("cursor"), Limit: 100}})
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "scans", s, "Scans", scansData{Scans: items, Next: next})
	return nil
}

// paramField is one input of the form generated from a task type's
// params.
type paramField struct {
	scanfleet.Param
	ID      string // the input's name and id: "arg.<name>"
	Input   string // "text", "number", "checkbox" or "textarea"
	Value   string
	Checked bool
	Default string
	Error   string
}

// scanForm is the scan form as typed, or as the stored scan fills it.
type scanForm struct {
	ID                                 string // "" for a new scan
	Name, Type                         string
	Frequency, Cron, Timeout, Site     string
	SingleRun, Enabled                 bool
	Workspaces                         map[string]bool
	Args                               map[string][]string // "arg.<name>" → values as typed
	Errors                             formErrors
	Types                              []*scanfleet.TaskType
	TypeDescription                    string
	Params                             []paramField
	AllWorkspaces                      []*scanfleet.Workspace
	LastRunAt                          *time.Time
	ManualRunPending, Saved, KnownType bool
}

type scanPageData struct {
	Form  scanForm
	Scan  *scanfleet.Scan
	Tasks []*scanfleet.Task
}

// fields maps the fields of scan errors to the form's inputs.
var scanFields = map[string]string{"name": "name", "type": "type", "workspaces": "workspaces", "frequency": "frequency",
	"cron": "cron", "frequency and cron": "frequency", "timeout": "timeout", "site": "site", "args": ""}

// prepare fills in what the form shows besides the typed values: the
// types, the workspaces and the inputs of the type's params.
func (u *UI) prepare(r *http.Request, f *scanForm) error {
	f.Types = u.b.TaskTypes()
	if f.Type == "" && len(f.Types) > 0 && f.ID == "" {
		f.Type = f.Types[0].Name
	}
	ws, _, err := u.b.ListWorkspaces(r.Context(), scanfleet.Page{Limit: scanfleet.MaxPageLimit})
	if err != nil {
		return err
	}
	f.AllWorkspaces = ws
	f.Params = nil
	for _, tt := range f.Types {
		if tt.Name != f.Type {
			continue
		}
		f.KnownType, f.TypeDescription = true, tt.Description
		for _, p := range tt.Params {
			pf := paramField{Param: p, ID: "arg." + p.Name, Input: "text", Error: f.Errors["arg."+p.Name]}
			if p.Default != nil {
				pf.Default = valueText(p.Default)
			}
			vals := f.Args[pf.ID]
			last := ""
			if len(vals) > 0 {
				last = vals[len(vals)-1]
			}
			switch p.Type {
			case scanfleet.ParamBoolean:
				pf.Input = "checkbox"
				pf.Checked = last == "true" || (len(vals) == 0 && p.Default == true)
			case scanfleet.ParamInteger:
				pf.Input, pf.Value = "number", last
			case scanfleet.ParamList:
				pf.Input, pf.Value = "textarea", last
			default:
				pf.Value = last
			}
			f.Params = append(f.Params, pf)
		}
	}
	return nil
}

// valueText shows an argument's value in its input.
func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []string:
		return strings.Join(x, "\n")
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = fmt.Sprint(p)
		}
		return strings.Join(parts, "\n")
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// formOf fills the form from a stored scan.
func formOf(sc *scanfleet.Scan) scanForm {
	f := scanForm{ID: sc.ID, Name: sc.Name, Type: sc.Type, Frequency: sc.Frequency.String(), Cron: sc.Cron,
		Timeout: sc.Timeout.String(), Site: sc.Site, SingleRun: sc.SingleRun, Enabled: sc.Enabled,
		Workspaces: map[string]bool{}, Args: map[string][]string{}, Errors: formErrors{},
		LastRunAt: sc.LastRunAt, ManualRunPending: sc.ManualRunPending}
	for _, w := range sc.Workspaces {
		f.Workspaces[w] = true
	}
	for k, v := range sc.Args {
		f.Args["arg."+k] = []string{valueText(v)}
	}
	return f
}

func (u *UI) handleNewScan(w http.ResponseWriter, r *http.Request, s *session) error {
	f := scanForm{Type: r.URL.Query().Get("type"), Enabled: true, Workspaces: map[string]bool{}, Errors: formErrors{}}
	if ws := r.URL.Query().Get("workspace"); ws != "" {
		f.Workspaces[ws] = true
	}
	return u.showScanForm(w, r, s, http.StatusOK, f, nil)
}

func (u *UI) showScanForm(w http.ResponseWriter, r *http.Request, s *session, status int, f scanForm, sc *scanfleet.Scan) error {
	if err := u.prepare(r, &f); err != nil {
		return err
	}
	d := scanPageData{Form: f, Scan: sc}
	title := "New scan"
	if sc != nil {
		title = "Scan " + sc.Name
		var err error
		if d.Tasks, _, err = u.b.ListTasks(r.Context(), scanfleet.TaskFilter{ScanID: sc.ID, Page: scanfleet.Page{Limit: 10}}); err != nil {
			return err
		}
	}
	u.render(w, r, status, "scan", s, title, d)
	return nil
}

// readScanForm reads the posted form. It returns the definition it
// describes, or the form with errors for the fields it could not read.
func (u *UI) readScanForm(r *http.Request, f *scanForm) (*scanfleet.Scan, bool) {
	pf := r.PostForm
	f.Name = strings.TrimSpace(pf.Get("name"))
	if f.ID == "" {
		f.Type = pf.Get("type")
	}
	f.Frequency, f.Cron = strings.TrimSpace(pf.Get("frequency")), strings.TrimSpace(pf.Get("cron"))
	f.Timeout, f.Site = strings.TrimSpace(pf.Get("timeout")), strings.TrimSpace(pf.Get("site"))
	f.SingleRun, f.Enabled = pf.Get("single_run") == "on", pf.Get("enabled") == "on"
	f.Workspaces, f.Args, f.Errors = map[string]bool{}, map[string][]string{}, formErrors{}
	sc := &scanfleet.Scan{Name: f.Name, Type: f.Type, Cron: f.Cron, Site: f.Site, SingleRun: f.SingleRun,
		Enabled: f.Enabled, Args: map[string]any{}}
	for _, ws := range pf["workspaces"] {
		f.Workspaces[ws] = true
		sc.Workspaces = append(sc.Workspaces, ws)
	}
	for _, d := range []struct {
		field, text string
		dst         *scanfleet.Duration
	}{{"frequency", f.Frequency, &sc.Frequency}, {"timeout", f.Timeout, &sc.Timeout}} {
		if d.text == "" {
			continue
		}
		v, err := time.ParseDuration(d.text)
		if err != nil {
			f.Errors[d.field] = fmt.Sprintf("%q is not a duration such as \"24h\" or \"90m\"", d.text)
			continue
		}
		*d.dst = scanfleet.Duration(v)
	}
	var tt *scanfleet.TaskType
	for _, t := range u.b.TaskTypes() {
		if t.Name == f.Type {
			tt = t
		}
	}
	if tt != nil {
		for _, p := range tt.Params {
			vals := pf["arg."+p.Name]
			f.Args["arg."+p.Name] = vals
			if len(vals) == 0 {
				continue
			}
			v := strings.TrimSpace(vals[len(vals)-1])
			switch p.Type {
			case scanfleet.ParamBoolean:
				sc.Args[p.Name] = v == "true"
			case scanfleet.ParamList:
				if lines, _ := scopeLines(v); len(lines) > 0 {
					sc.Args[p.Name] = lines
				}
			case scanfleet.ParamInteger:
				if v == "" {
					continue
				}
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					sc.Args[p.Name] = n
				} else {
					sc.Args[p.Name] = v // ValidateArgs names it
				}
			default:
				if v != "" {
					sc.Args[p.Name] = v
				}
			}
		}
	}
	return sc, len(f.Errors) == 0
}

func (u *UI) handleCreateScan(w http.ResponseWriter, r *http.Request, s *session) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<20)
	if err := r.ParseForm(); err != nil {
		return scanfleet.Errorf(scanfleet.EINVALID, "form: %v", err)
	}
	f := scanForm{}
	status := http.StatusBadRequest
	sc, ok := u.readScanForm(r, &f)
	if ok {
		err := u.b.CreateScan(r.Context(), sc)
		if err == nil {
			http.Redirect(w, r, "/scans/"+sc.ID, http.StatusSeeOther)
			return nil
		}
		if code := scanfleet.ErrorCode(err); code != scanfleet.EINVALID && code != scanfleet.ECONFLICT {
			return err
		}
		f.Errors.add(err, scanFields)
		status = scanfleet.HTTPStatus(scanfleet.ErrorCode(err))
	}
	return u.showScanForm(w, r, s, status, f, nil)
}

func (u *UI) handleScan(w http.ResponseWriter, r *http.Request, s *session) error {
	sc, err := u.b.FindScan(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := formOf(sc)
	f.Saved = r.URL.Query().Get("saved") == "1"
	return u.showScanForm(w, r, s, http.StatusOK, f, sc)
}

func (u *UI) handleUpdateScan(w http.ResponseWriter, r *http.Request, s *session) error {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<20)
	if err := r.ParseForm(); err != nil {
		return scanfleet.Errorf(scanfleet.EINVALID, "form: %v", err)
	}
	ctx := r.Context()
	cur, err := u.b.FindScan(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	f := formOf(cur)
	status := http.StatusBadRequest
	sc, ok := u.readScanForm(r, &f)
	if ok {
		upd := scanfleet.ScanUpdate{Name: &sc.Name, Args: &sc.Args, Workspaces: &sc.Workspaces, Frequency: &sc.Frequency,
			Cron: &sc.Cron, Timeout: &sc.Timeout, Site: &sc.Site, SingleRun: &sc.SingleRun, Enabled: &sc.Enabled}
		_, err := u.b.UpdateScan(ctx, cur.ID, upd)
		if err == nil {
			http.Redirect(w, r, "/scans/"+cur.ID+"?saved=1", http.StatusSeeOther)
			return nil
		}
		if code := scanfleet.ErrorCode(err); code != scanfleet.EINVALID && code != scanfleet.ECONFLICT {
			return err
		}
		f.Errors.add(err, scanFields)
		status = scanfleet.HTTPStatus(scanfleet.ErrorCode(err))
	}
	return u.showScanForm(w, r, s, status, f, cur)
}

// back returns where a form posted from a list should return to: the
// page it came from when that is this site, else fallback.
func back(r *http.Request, fallback string) string {
	if v := r.PostFormValue("back"); v != "" {
		return safeNext(v)
	}
	return fallback
}

func (u *UI) handleEnableScan(w http.ResponseWriter, r *http.Request, _ *session) error {
	enabled := r.PostFormValue("enabled") == "true"
	if _, err := u.b.UpdateScan(r.Context(), r.PathValue("id"), scanfleet.ScanUpdate{Enabled: &enabled}); err != nil {
		return err
	}
	http.Redirect(w, r, back(r, "/scans"), http.StatusSeeOther)
	return nil
}

func (u *UI) handleRunScan(w http.ResponseWriter, r *http.Request, _ *session) error {
	id := r.PathValue("id")
	if _, err := u.b.RunScan(r.Context(), id); err != nil {
		return err
	}
	http.Redirect(w, r, "/tasks?scan="+id, http.StatusSeeOther)
	return nil
}
