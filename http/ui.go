package http

import (
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
