package html

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// tasksPerPage is the length of a page of the scan history.
const tasksPerPage = 25

type tasksData struct {
	Tasks      []*scanfleet.Task
	Next       string
	Query      url.Values
	Statuses   []scanfleet.TaskStatus
	Status     map[scanfleet.TaskStatus]bool
	Scans      []*scanfleet.Scan
	ScanNames  map[string]string
	Workspaces []*scanfleet.Workspace
	Scan       string
	Workspace  string
	Since      string
	Until      string
	Errors     formErrors
	Paged      bool
}

// formTimes are the layouts a time filter is read in, all as UTC: what a
// datetime-local input sends, and RFC 3339.
var formTimes = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02"}

func parseFormTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range formTimes {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, scanfleet.Errorf(scanfleet.EINVALID, "%q is not a time such as 2026-01-02T15:04 (UTC)", v)
}

func (u *UI) handleTasks(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := r.Context()
	q := r.URL.Query()
	d := tasksData{Query: q, Statuses: scanfleet.TaskStatuses, Status: map[scanfleet.TaskStatus]bool{},
		Scan: q.Get("scan"), Workspace: q.Get("workspace"), Since: q.Get("since"), Until: q.Get("until"),
		Errors: formErrors{}, ScanNames: map[string]string{}, Paged: q.Get("cursor") != ""}
	f := scanfleet.TaskFilter{ScanID: d.Scan, Workspace: d.Workspace, Page: scanfleet.Page{Cursor: q.Get("cursor"), Limit: tasksPerPage}}
	for _, v := range q["status"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			st, err := scanfleet.ParseTaskStatus(name)
			if err != nil {
				d.Errors["status"] = scanfleet.ErrorMessage(err)
				continue
			}
			d.Status[st] = true
			f.Status = append(f.Status, st)
		}
	}
	for _, t := range []struct {
		name, v string
		dst     *time.Time
	}{{"since", d.Since, &f.Since}, {"until", d.Until, &f.Until}} {
		if t.v == "" {
			continue
		}
		v, err := parseFormTime(strings.TrimSpace(t.v))
		if err != nil {
			d.Errors[t.name] = scanfleet.ErrorMessage(err)
			continue
		}
		*t.dst = v
	}
	var err error
	if d.Scans, _, err = u.b.ListScans(ctx, scanfleet.ScanFilter{Page: scanfleet.Page{Limit: scanfleet.MaxPageLimit}}); err != nil {
		return err
	}
	for _, sc := range d.Scans {
		d.ScanNames[sc.ID] = sc.Name
	}
	if d.Workspaces, _, err = u.b.ListWorkspaces(ctx, scanfleet.Page{Limit: scanfleet.MaxPageLimit}); err != nil {
		return err
	}
	status := http.StatusOK
	if len(d.Errors) > 0 {
		status = http.StatusBadRequest
	} else if d.Tasks, d.Next, err = u.b.ListTasks(ctx, f); err != nil {
		if scanfleet.ErrorCode(err) != scanfleet.EINVALID {
			return err
		}
		d.Errors[""] = scanfleet.ErrorMessage(err) // a stale cursor, say
		status = http.StatusBadRequest
	}
	u.render(w, r, status, "tasks", s, "Scan history", d)
	return nil
}

// logLinesShown bounds the log lines a task page carries; the live log
// streams the rest.
const logLinesShown = 1000

type taskData struct {
	Task     *scanfleet.Task
	ScanName string
	Logs     []scanfleet.TaskLog
	LastSeq  int64
	MoreLogs bool
	// OOB adds the status of the task's row in the history, for htmx to
	// swap out of band along with the panel's status.
	OOB bool
}

func (u *UI) taskData(r *http.Request, id string, withLogs bool) (taskData, error) {
	ctx := r.Context()
	t, err := u.b.FindTask(ctx, id)
	if err != nil {
		return taskData{}, err
	}
	d := taskData{Task: t}
	if t.ScanID != "" {
		if sc, err := u.b.FindScan(ctx, t.ScanID); err == nil {
			d.ScanName = sc.Name
		}
	}
	if withLogs {
		if d.Logs, err = u.b.ListTaskLogs(ctx, id, 0, logLinesShown); err != nil {
			return taskData{}, err
		}
		if n := len(d.Logs); n > 0 {
			d.LastSeq = d.Logs[n-1].Seq
			d.MoreLogs = n == logLinesShown
		}
	}
	return d, nil
}

// handleTask shows a task: as a page, or as the panel a row of the
// history expands into when htmx asks.
func (u *UI) handleTask(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := u.taskData(r, r.PathValue("id"), true)
	if err != nil {
		return err
	}
	if r.Header.Get("HX-Request") == "true" {
		d.OOB = true // the row the panel expands from shows the same status
		u.renderFragment(w, http.StatusOK, "task", "task-panel", s, d)
		return nil
	}
	u.render(w, r, http.StatusOK, "task", s, "Task "+d.Task.ID, d)
	return nil
}

// handleTaskStatus returns the status part of a task's panel, which a
// running task's page polls.
func (u *UI) handleTaskStatus(w http.ResponseWriter, r *http.Request, s *session) error {
	d, err := u.taskData(r, r.PathValue("id"), false)
	if err != nil {
		return err
	}
	d.OOB = true
	u.renderFragment(w, http.StatusOK, "task", "task-status", s, d)
	return nil
}

// handleTaskLogs follows a task's log as server-sent events, in the API's
// format, from the line after ?after=.
func (u *UI) handleTaskLogs(w http.ResponseWriter, r *http.Request, _ *session) error {
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return scanfleet.Errorf(scanfleet.EINVALID, "after: %q is not a line number", v)
		}
		after = n
	}
	id := r.PathValue("id")
	if _, err := u.b.FindTask(r.Context(), id); err != nil {
		return err
	}
	u.b.FollowTaskLogs(w, r, id, after)
	return nil
}

// handleCancelTask kills a task. htmx gets the task's new status; a plain
// form goes back to the task's page.
func (u *UI) handleCancelTask(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	if _, err := u.b.CancelTask(r.Context(), id); err != nil {
		return err
	}
	if r.Header.Get("HX-Request") == "true" {
		return u.handleTaskStatus(w, r, s)
	}
	http.Redirect(w, r, back(r, "/tasks/"+id), http.StatusSeeOther)
	return nil
}
