package http

import (
	"context"
	"net/http"

	"github.com/scanfleet/scanfleet"
)

func (s *Server) handleListTaskTypes(w http.ResponseWriter, r *http.Request) {
	type taskType struct {
		*scanfleet.TaskType
		Pool    scanfleet.Pool     `json:"pool"`
		Timeout scanfleet.Duration `json:"timeout"`
	}
	var out []taskType
	for _, t := range s.registry.List() {
		d := t.Timeout
		if d == 0 {
			d = scanfleet.DefaultTaskTimeout
		}
		out = append(out, taskType{TaskType: t, Pool: t.Pool(), Timeout: scanfleet.Duration(d)})
	}
	writeJSON(w, http.StatusOK, newList(out, ""))
}

type createScanRequest struct {
	Name             string             `json:"name"`
	Type             string             `json:"type"`
	Args             map[string]any     `json:"args"`
	Workspaces       []string           `json:"workspaces"`
	Frequency        scanfleet.Duration `json:"frequency"`
	Cron             string             `json:"cron"`
	Timeout          scanfleet.Duration `json:"timeout"`
	Site             string             `json:"site"`
	SingleRun        bool               `json:"single_run"`
	Enabled          *bool              `json:"enabled"`
	ManualRunPending bool               `json:"manual_run_pending"`
	ChunkSize        int64              `json:"chunk_size"`
}

func (s *Server) handleCreateScan(w http.ResponseWriter, r *http.Request) {
	var req createScanRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	scan := &scanfleet.Scan{
		Name: req.Name, Type: req.Type, Args: req.Args, Workspaces: req.Workspaces,
		Frequency: req.Frequency, Cron: req.Cron, Timeout: req.Timeout, Site: req.Site,
		SingleRun: req.SingleRun, Enabled: req.Enabled == nil || *req.Enabled,
		ManualRunPending: req.ManualRunPending, ChunkSize: req.ChunkSize,
	}
	if err := s.createScan(r.Context(), scan); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/scans/"+scan.ID)
	writeJSON(w, http.StatusCreated, scan)
}

func (s *Server) handleListScans(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := scanfleet.ScanFilter{Workspace: r.URL.Query().Get("workspace"), Type: r.URL.Query().Get("type"), Page: p}
	switch v := r.URL.Query().Get("enabled"); v {
	case "":
	case "true", "false":
		b := v == "true"
		f.Enabled = &b
	default:
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "enabled: %q is not true or false", v))
		return
	}
	items, next, err := s.store.ListScans(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(items, next))
}

func (s *Server) handleGetScan(w http.ResponseWriter, r *http.Request) {
	scan, err := s.store.FindScan(r.Context(), pathValue(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, scan)
}

func (s *Server) handleUpdateScan(w http.ResponseWriter, r *http.Request) {
	var upd scanfleet.ScanUpdate
	if err := s.decodeJSON(w, r, &upd); err != nil {
		s.writeError(w, r, err)
		return
	}
	scan, err := s.updateScan(r.Context(), pathValue(r, "id"), upd)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, scan)
}

func (s *Server) handleDeleteScan(w http.ResponseWriter, r *http.Request) {
	started, err := s.store.DeleteScan(r.Context(), pathValue(r, "id"), s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, t := range started {
		s.sendCancel(r.Context(), t)
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleRunScan creates the tasks of one run of the scan now: one per
// workspace. It answers with the tasks.
func (s *Server) handleRunScan(w http.ResponseWriter, r *http.Request) {
	created, inFlight, err := s.startRun(r.Context(), pathValue(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(created) == 0 && len(inFlight) > 0 {
		// A run is in flight: answered with it, nothing started twice.
		writeJSON(w, http.StatusOK, map[string]any{"tasks": inFlight, "in_flight": true})
		return
	}
	s.metrics.tasksCreated.Add(float64(len(created)))
	if created == nil {
		created = []*scanfleet.Task{}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"tasks": created, "in_flight": inFlight != nil})
}

// createScan validates and stores a new scan.
func (s *Server) createScan(ctx context.Context, scan *scanfleet.Scan) error {
	now := s.cfg.Now()
	scan.ID, scan.CreatedAt, scan.UpdatedAt = scanfleet.NewID(), now, now
	if err := scan.Validate(s.registry); err != nil {
		return err
	}
	return s.store.CreateScan(ctx, scan)
}

// updateScan applies, validates and stores a change.
func (s *Server) updateScan(ctx context.Context, id string, upd scanfleet.ScanUpdate) (*scanfleet.Scan, error) {
	scan, err := s.store.FindScan(ctx, id)
	if err != nil {
		return nil, err
	}
	upd.Apply(scan)
	scan.UpdatedAt = s.cfg.Now()
	if err := scan.Validate(s.registry); err != nil {
		return nil, err
	}
	if err := s.store.UpdateScan(ctx, scan); err != nil {
		return nil, err
	}
	return scan, nil
}
