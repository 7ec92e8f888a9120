package http

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// taskFilter reads the filters of a task list from the query.
func taskFilter(r *http.Request) (scanfleet.TaskFilter, error) {
	q := r.URL.Query()
	p, err := page(r)
	if err != nil {
		return scanfleet.TaskFilter{}, err
	}
	f := scanfleet.TaskFilter{ScanID: q.Get("scan"), Workspace: q.Get("workspace"), WorkerID: q.Get("worker"), Page: p}
	for _, v := range q["status"] {
		for _, name := range strings.Split(v, ",") {
			st, err := scanfleet.ParseTaskStatus(strings.TrimSpace(name))
			if err != nil {
				return f, err
			}
			f.Status = append(f.Status, st)
		}
	}
	if f.Since, err = queryTime(r, "since"); err != nil {
		return f, err
	}
	f.Until, err = queryTime(r, "until")
	return f, err
}

func (s *Server) handleListTasks(w http.ResponseWriter, r *http.Request) {
	f, err := taskFilter(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items, next, err := s.store.ListTasks(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *Server) handleGetTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.store.FindTask(r.Context(), pathValue(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// handleTaskLogs returns a page of a task's log lines after the line
// numbered ?after=; next_after is the value for the following page.
func (s *Server) handleTaskLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "after: %q is not a line number", v))
			return
		}
		after = n
	}
	p, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := pathValue(r, "id")
	if _, err := s.store.FindTask(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	if q.Get("follow") == "1" || q.Get("follow") == "true" {
		s.followLogs(w, r, id, after)
		return
	}
	logs, err := s.store.ListTaskLogs(r.Context(), id, after, p.Limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if logs == nil {
		logs = []scanfleet.TaskLog{}
	}
	next := after
	if len(logs) > 0 {
		next = logs[len(logs)-1].Seq
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": logs, "next_after": next})
}

// followInterval is how often a followed log is read again.
const followInterval = 250 * time.Millisecond

// followLogs streams a task's log as server-sent events: an "log" event per
// line (its id the line number, so a reconnecting client resumes with
// Last-Event-ID), and one "end" event with the task's final status once it
// has ended and every line was sent.
func (s *Server) followLogs(w http.ResponseWriter, r *http.Request, id string, after int64) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		s.writeError(w, r, fmt.Errorf("streaming unsupported by the response writer"))
		return
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		fmt.Sscan(v, &after)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		// Read the status before the lines: lines written before the task
		// ended are then sure to be sent before "end".
		t, err := s.store.FindTask(ctx, id)
		if err != nil {
			return
		}
		for {
			logs, err := s.store.ListTaskLogs(ctx, id, after, 1000)
			if err != nil {
				return
			}
			for _, l := range logs {
				b, _ := json.Marshal(l)
				fmt.Fprintf(w, "id: %d\nevent: log\ndata: %s\n\n", l.Seq, b)
				after = l.Seq
			}
			if len(logs) < 1000 {
				break
			}
		}
		if t.Status.Terminal() {
			b, _ := json.Marshal(map[string]any{"status": t.Status, "error": t.Error})
			fmt.Fprintf(w, "event: end\ndata: %s\n\n", b)
			flusher.Flush()
			return
		}
		fmt.Fprint(w, ": keep-alive\n\n")
		flusher.Flush()
		select {
		case <-ctx.Done():
			return
		case <-s.stopping:
			return
		case <-tick.C:
		}
	}
}

// taskCreate is a task submitted on its own, outside any scan: what
// "scanfleet scan TARGETS" sends.
type taskCreate struct {
	Type      string             `json:"type"`
	Workspace string             `json:"workspace"`
	Targets   []string           `json:"targets"`
	Args      map[string]any     `json:"args"`
	Timeout   scanfleet.Duration `json:"timeout"`
	Site      string             `json:"site"`
}

// handleCreateTask creates one task of a type over targets in a
// workspace's scope. Targets wholly out of scope are refused, naming the
// first; the worker clips the rest to the scope before sending anything.
func (s *Server) handleCreateTask(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req taskCreate
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Type == "" {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "type: is empty"))
		return
	}
	tt, err := s.registry.Lookup(req.Type)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	args, err := tt.ValidateArgs(req.Args)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Workspace == "" {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "workspace: is empty"))
		return
	}
	ws, err := s.store.FindWorkspace(ctx, req.Workspace)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(req.Targets) > 10000 {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "targets: %d is more than 10000; use CIDR prefixes or a scan of the workspace", len(req.Targets)))
		return
	}
	m, err := ws.Scope.Compile()
	if err == nil {
		err = m.CheckTargets(req.Targets)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Timeout < 0 {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "timeout: must not be negative"))
		return
	}
	now := s.cfg.Now()
	t, err := scanfleet.NewTask(scanfleet.TaskSpec{Type: tt, Workspace: ws, Args: args, Targets: req.Targets,
		Timeout: req.Timeout, Site: req.Site}, now)
	if err == nil {
		err = s.store.CreateTasks(ctx, []*scanfleet.Task{t})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.metrics.tasksCreated.Inc()
	if s.cfg.TasksCreated != nil {
		s.cfg.TasksCreated([]*scanfleet.Task{t})
	}
	writeJSON(w, http.StatusCreated, t)
}

// historyEntry is one task of a scan's history with the start of its log.
type historyEntry struct {
	*scanfleet.Task
	Logs []scanfleet.TaskLog `json:"logs"`
}

// handleScanHistory is Crossfeed's Scan History: the scan's tasks newest
// first, with the task list's filters (status, workspace, since, until),
// their input, output and error, and the first ?logs= lines (20, at most
// 1000) of each one's log.
func (s *Server) handleScanHistory(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	scan, err := s.store.FindScan(ctx, pathValue(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := taskFilter(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if f.Page.Limit == 0 || f.Page.Limit > 100 {
		f.Page.Limit = min(cmp.Or(f.Page.Limit, 25), 100)
	}
	logs := 20
	if v := r.URL.Query().Get("logs"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "logs: %q is not a number of lines from 0 to 1000", v))
			return
		}
		logs = n
	}
	f.ScanID = scan.ID
	tasks, next, err := s.store.ListTasks(ctx, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]historyEntry, len(tasks))
	for i, t := range tasks {
		items[i] = historyEntry{Task: t, Logs: []scanfleet.TaskLog{}}
		if logs > 0 {
			if items[i].Logs, err = s.store.ListTaskLogs(ctx, t.ID, 0, logs); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"scan": scan, "items": items, "next_cursor": next})
}
