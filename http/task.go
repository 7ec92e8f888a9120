package http

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/scanfleet/scanfleet"
)

func (s *Server) handleListTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := scanfleet.TaskFilter{ScanID: q.Get("scan"), Workspace: q.Get("workspace"), Page: p}
	for _, v := range q["status"] {
		for _, name := range strings.Split(v, ",") {
			st, err := scanfleet.ParseTaskStatus(strings.TrimSpace(name))
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			f.Status = append(f.Status, st)
		}
	}
	if f.Since, err = queryTime(r, "since"); err != nil {
		s.writeError(w, r, err)
		return
	}
	if f.Until, err = queryTime(r, "until"); err != nil {
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
