package http

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
	"github.com/scanfleet/scanfleet/http/html"
	"github.com/scanfleet/scanfleet/launcher"
)

// ui returns the web UI's handler, mounted at "/" by routes. A path under
// /api/ that no API route took is answered as the API answers it, in JSON.
func (s *Server) ui() http.Handler {
	u, err := html.New(html.Config{Backend: uiBackend{s}, Logger: s.logger, Now: s.cfg.Now,
		MaxUploadBytes: s.cfg.MaxCloudBytes, Version: s.cfg.Version})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/"):
			s.writeError(w, r, scanfleet.Errorf(scanfleet.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
		case err != nil: // the embedded templates do not parse: a bug the tests catch
			s.writeError(w, r, err)
		default:
			u.ServeHTTP(w, r)
		}
	})
}

// uiBackend is the server as the web UI sees it. Reads go to the store;
// changes go through the same steps as the API's routes.
type uiBackend struct{ s *Server }

var _ html.Backend = uiBackend{}

func (b uiBackend) TokenByHash(ctx context.Context, hash string) (*scanfleet.Token, error) {
	tok, err := b.s.store.FindTokenByHash(ctx, hash)
	if err != nil {
		return nil, err
	}
	b.s.touch(ctx, tok)
	return tok, nil
}

func (b uiBackend) TaskTypes() []*scanfleet.TaskType {
	if b.s.registry == nil {
		return nil
	}
	return b.s.registry.List()
}

func (b uiBackend) ListWorkspaces(ctx context.Context, p scanfleet.Page) ([]*scanfleet.Workspace, string, error) {
	return b.s.store.ListWorkspaces(ctx, p)
}

func (b uiBackend) FindWorkspace(ctx context.Context, name string) (*scanfleet.Workspace, error) {
	return b.s.store.FindWorkspace(ctx, name)
}

func (b uiBackend) CountRecords(ctx context.Context, ws string) (map[scanfleet.RecordKind]int64, error) {
	return b.s.store.CountRecords(ctx, ws)
}

func (b uiBackend) CreateWorkspace(ctx context.Context, ws *scanfleet.Workspace) error {
	return b.s.createWorkspace(ctx, ws)
}

func (b uiBackend) UpdateWorkspace(ctx context.Context, name string, upd scanfleet.WorkspaceUpdate) (*scanfleet.Workspace, error) {
	return b.s.updateWorkspace(ctx, name, upd)
}

func (b uiBackend) ListScans(ctx context.Context, f scanfleet.ScanFilter) ([]*scanfleet.Scan, string, error) {
	return b.s.store.ListScans(ctx, f)
}

func (b uiBackend) FindScan(ctx context.Context, id string) (*scanfleet.Scan, error) {
	return b.s.store.FindScan(ctx, id)
}

func (b uiBackend) CreateScan(ctx context.Context, scan *scanfleet.Scan) error {
	return b.s.createScan(ctx, scan)
}

func (b uiBackend) UpdateScan(ctx context.Context, id string, upd scanfleet.ScanUpdate) (*scanfleet.Scan, error) {
	return b.s.updateScan(ctx, id, upd)
}

func (b uiBackend) RunScan(ctx context.Context, id string) ([]*scanfleet.Task, error) {
	return b.s.runScan(ctx, id)
}

func (b uiBackend) ListTasks(ctx context.Context, f scanfleet.TaskFilter) ([]*scanfleet.Task, string, error) {
	return b.s.store.ListTasks(ctx, f)
}

func (b uiBackend) FindTask(ctx context.Context, id string) (*scanfleet.Task, error) {
	return b.s.store.FindTask(ctx, id)
}

func (b uiBackend) ListTaskLogs(ctx context.Context, id string, after int64, limit int) ([]scanfleet.TaskLog, error) {
	return b.s.store.ListTaskLogs(ctx, id, after, limit)
}

func (b uiBackend) CountTasksByStatus(ctx context.Context) (map[scanfleet.TaskStatus]int64, error) {
	return b.s.store.CountTasksByStatus(ctx)
}

func (b uiBackend) CancelTask(ctx context.Context, id string) (*scanfleet.Task, error) {
	return b.s.cancelTask(ctx, id)
}

func (b uiBackend) FollowTaskLogs(w http.ResponseWriter, r *http.Request, id string, after int64) {
	b.s.followLogs(w, r, id, after)
}

func (b uiBackend) ListWorkers(ctx context.Context) ([]*scanfleet.Worker, error) {
	return b.s.store.ListWorkers(ctx, b.s.cfg.Now())
}

// LaunchAttempts returns the launcher's attempts, newest first; nothing
// when the server launches no workers.
func (b uiBackend) LaunchAttempts(context.Context) ([]launcher.Attempt, error) {
	if b.s.cfg.Launches == nil {
		return nil, nil
	}
	attempts, _ := b.s.cfg.Launches()
	return attempts, nil
}

func (b uiBackend) ListRecords(ctx context.Context, f scanfleet.RecordFilter) ([]*scanfleet.Record, string, error) {
	return b.s.store.ListRecords(ctx, f)
}

func (b uiBackend) StreamRecords(w http.ResponseWriter, r *http.Request, f scanfleet.RecordFilter) {
	b.s.streamRecords(w, r, f)
}

func (b uiBackend) GetCloud(ctx context.Context, ws string) (*scanfleet.CloudEnv, error) {
	return b.s.store.GetCloud(ctx, ws)
}

func (b uiBackend) PutCloud(ctx context.Context, ws string, body io.Reader) (*scanfleet.CloudEnv, error) {
	return b.s.putCloud(ctx, ws, body)
}

func (b uiBackend) Attackers(ctx context.Context, ws, vmID string, mode attacksurface.Mode) ([]string, error) {
	// cloudGraph reads only the request's context.
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return nil, err
	}
	g, err := b.s.cloudGraph(r, ws)
	if err != nil {
		return nil, err
	}
	ids, err := g.Attackers(vmID, mode)
	if errors.Is(err, attacksurface.ErrVMNotFound) {
		return nil, scanfleet.Errorf(scanfleet.ENOTFOUND, "vm %q not found in the cloud environment", vmID)
	}
	return ids, err
}

// The operations below are the bodies of the API's handlers without their
// JSON, so that the UI changes things the way the API does. The handlers
// in workspace.go, scan.go, worker.go and cloud.go can call them in turn.

// createWorkspace validates and stores a new workspace (handleCreateWorkspace).
func (s *Server) createWorkspace(ctx context.Context, ws *scanfleet.Workspace) error {
	now := s.cfg.Now()
	ws.ID, ws.CreatedAt, ws.UpdatedAt = scanfleet.NewID(), now, now
	if err := ws.Validate(); err != nil {
		return err
	}
	return s.store.CreateWorkspace(ctx, ws)
}

// updateWorkspace validates and applies a change (handleUpdateWorkspace).
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

// createScan validates and stores a new scan (handleCreateScan).
func (s *Server) createScan(ctx context.Context, scan *scanfleet.Scan) error {
	now := s.cfg.Now()
	scan.ID, scan.CreatedAt, scan.UpdatedAt = scanfleet.NewID(), now, now
	if err := scan.Validate(s.registry); err != nil {
		return err
	}
	return s.store.CreateScan(ctx, scan)
}

// updateScan applies, validates and stores a change (handleUpdateScan).
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

// runScan starts a run of the scan now through the scheduler, as
// handleRunScan does; a run already in flight is answered with its tasks.
func (s *Server) runScan(ctx context.Context, id string) ([]*scanfleet.Task, error) {
	created, inFlight, err := s.startRun(ctx, id)
	if err != nil {
		return nil, err
	}
	s.metrics.tasksCreated.Add(float64(len(created)))
	if len(created) == 0 {
		return inFlight, nil
	}
	return created, nil
}

// cancelTask cancels a task at once when it has not started, else tells
// its worker, which stops it and reports it cancelled (handleCancelTask).
func (s *Server) cancelTask(ctx context.Context, id string) (*scanfleet.Task, error) {
	t, err := s.store.RequestCancel(ctx, id, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	s.sendCancel(ctx, t)
	return t, nil
}

// putCloud validates, analyses and stores a workspace's cloud environment
// read from body, and caches its graph (handlePutCloud).
func (s *Server) putCloud(ctx context.Context, name string, body io.Reader) (*scanfleet.CloudEnv, error) {
	if _, err := s.store.FindWorkspace(ctx, name); err != nil {
		return nil, err
	}
	env, err := attacksurface.Parse(body)
	var me *http.MaxBytesError
	if errors.As(err, &me) {
		return nil, scanfleet.Errorf(scanfleet.ETOOLARGE, "body: larger than the %d-byte limit for a cloud environment", s.cfg.MaxCloudBytes)
	} else if err != nil {
		return nil, cloudError(err)
	}
	g, err := attacksurface.Build(env)
	if err != nil {
		return nil, cloudError(err)
	}
	var buf bytes.Buffer
	if err := env.WriteJSON(&buf); err != nil {
		return nil, err
	}
	ce := &scanfleet.CloudEnv{Workspace: name, Data: buf.Bytes(), VMCount: len(env.VMs), RuleCount: len(env.Rules), UpdatedAt: s.cfg.Now()}
	if err := s.store.PutCloud(ctx, ce); err != nil {
		return nil, err
	}
	// Read back for the stored time, which the store may round.
	if stored, err := s.store.GetCloud(ctx, name); err == nil {
		s.graphs.put(name, stored.UpdatedAt, g)
		ce = stored
	}
	return ce, nil
}
