package http

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/scanfleet/scanfleet"
)

func pathValue(r *http.Request, name string) string { return chi.URLParam(r, name) }

type createWorkspaceRequest struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Scope       scanfleet.Scope `json:"scope"`
}

func (s *Server) handleCreateWorkspace(w http.ResponseWriter, r *http.Request) {
	var req createWorkspaceRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ws := &scanfleet.Workspace{Name: req.Name, Description: req.Description, Scope: req.Scope}
	if err := s.createWorkspace(r.Context(), ws); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/workspaces/"+ws.Name)
	writeJSON(w, http.StatusCreated, ws)
}

func (s *Server) handleListWorkspaces(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items, next, err := s.store.ListWorkspaces(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(items, next))
}

// workspaceResponse adds the inventory's size to a workspace.
type workspaceResponse struct {
	*scanfleet.Workspace
	RecordCounts map[scanfleet.RecordKind]int64 `json:"record_counts"`
}

func (s *Server) handleGetWorkspace(w http.ResponseWriter, r *http.Request) {
	ws, err := s.store.FindWorkspace(r.Context(), pathValue(r, "ws"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	counts, err := s.store.CountRecords(r.Context(), ws.Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, workspaceResponse{Workspace: ws, RecordCounts: counts})
}

func (s *Server) handleUpdateWorkspace(w http.ResponseWriter, r *http.Request) {
	var upd scanfleet.WorkspaceUpdate
	if err := s.decodeJSON(w, r, &upd); err != nil {
		s.writeError(w, r, err)
		return
	}
	ws, err := s.updateWorkspace(r.Context(), pathValue(r, "ws"), upd)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ws)
}

func (s *Server) handleDeleteWorkspace(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteWorkspace(r.Context(), pathValue(r, "ws")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleCheckScope answers whether a target is in the workspace's scope,
// and which entry decided; it is how a user checks a scope before a scan.
func (s *Server) handleCheckScope(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	if target == "" {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "target: is missing; pass ?target=<ip, cidr, name or url>"))
		return
	}
	ws, err := s.store.FindWorkspace(r.Context(), pathValue(r, "ws"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	m, err := ws.Scope.Compile()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d := m.Check(target)
	writeJSON(w, http.StatusOK, map[string]any{"target": target, "in_scope": d.In, "rule": d.Rule, "reason": d.Reason})
}

// createWorkspace validates and stores a new workspace (the API and the UI).
func (s *Server) createWorkspace(ctx context.Context, ws *scanfleet.Workspace) error {
	now := s.cfg.Now()
	ws.ID, ws.CreatedAt, ws.UpdatedAt = scanfleet.NewID(), now, now
	if err := ws.Validate(); err != nil {
		return err
	}
	return s.store.CreateWorkspace(ctx, ws)
}

// updateWorkspace validates and applies a change.
func (s *Server) updateWorkspace(ctx context.Context, name string, upd scanfleet.WorkspaceUpdate) (*scanfleet.Workspace, error) {
	if upd.Scope != nil {
		scope, err := upd.Scope.Normalize()
		if err != nil {
			return nil, err
		}
		upd.Scope = &scope
	}
	if upd.Description != nil && len(*upd.Description) > 4096 {
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "description: longer than 4096 characters")
	}
	return s.store.UpdateWorkspace(ctx, name, upd)
}
