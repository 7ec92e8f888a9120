package html

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
	"github.com/scanfleet/scanfleet/launcher"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Backend is what the UI needs of the server. Reads return what the store
// holds; changes go through the server's own code, as the API's routes do,
// so that a task run or cancelled here is routed and stopped the same way.
// Errors are scanfleet errors: their code decides the page's status.
type Backend interface {
	// TokenByHash returns the API token whose secret hashes
	// (scanfleet.HashToken) to hash, or ENOTFOUND, and notes its use.
	TokenByHash(ctx context.Context, hash string) (*scanfleet.Token, error)
	// TaskTypes returns the task types the server knows, by name.
	TaskTypes() []*scanfleet.TaskType

	ListWorkspaces(ctx context.Context, p scanfleet.Page) ([]*scanfleet.Workspace, string, error)
	FindWorkspace(ctx context.Context, name string) (*scanfleet.Workspace, error)
	CountRecords(ctx context.Context, workspace string) (map[scanfleet.RecordKind]int64, error)
	// CreateWorkspace validates and stores a new workspace.
	CreateWorkspace(ctx context.Context, ws *scanfleet.Workspace) error
	// UpdateWorkspace validates and applies a change to a workspace.
	UpdateWorkspace(ctx context.Context, name string, upd scanfleet.WorkspaceUpdate) (*scanfleet.Workspace, error)

	ListScans(ctx context.Context, f scanfleet.ScanFilter) ([]*scanfleet.Scan, string, error)
	FindScan(ctx context.Context, id string) (*scanfleet.Scan, error)
	// CreateScan validates scan against the task types and stores it.
	CreateScan(ctx context.Context, scan *scanfleet.Scan) error
	// UpdateScan applies upd to the scan, validates and stores it.
	UpdateScan(ctx context.Context, id string, upd scanfleet.ScanUpdate) (*scanfleet.Scan, error)
	// RunScan creates the tasks of one run of the scan now.
	RunScan(ctx context.Context, id string) ([]*scanfleet.Task, error)

	ListTasks(ctx context.Context, f scanfleet.TaskFilter) ([]*scanfleet.Task, string, error)
	FindTask(ctx context.Context, id string) (*scanfleet.Task, error)
	ListTaskLogs(ctx context.Context, id string, after int64, limit int) ([]scanfleet.TaskLog, error)
	CountTasksByStatus(ctx context.Context) (map[scanfleet.TaskStatus]int64, error)
	// CancelTask cancels a task that has not started, or tells the worker
	// running it to stop it.
	CancelTask(ctx context.Context, id string) (*scanfleet.Task, error)
	// FollowTaskLogs streams the task's log after line number after as
	// server-sent events, in the API's format: "log" events, then one
	// "end" event when the task has ended.
	FollowTaskLogs(w http.ResponseWriter, r *http.Request, id string, after int64)

	// ListWorkers returns every worker with its state as of now.
	ListWorkers(ctx context.Context) ([]*scanfleet.Worker, error)
	// LaunchAttempts returns the launcher's recent attempts to start
	// workers; nil when the server has no launcher.
	LaunchAttempts(ctx context.Context) ([]launcher.Attempt, error)

	ListRecords(ctx context.Context, f scanfleet.RecordFilter) ([]*scanfleet.Record, string, error)
	// StreamRecords writes every record f selects as JSON Lines, in the
	// records API's format.
	StreamRecords(w http.ResponseWriter, r *http.Request, f scanfleet.RecordFilter)

	GetCloud(ctx context.Context, workspace string) (*scanfleet.CloudEnv, error)
	// PutCloud validates, analyses and stores the workspace's cloud
	// environment read from body.
	PutCloud(ctx context.Context, workspace string, body io.Reader) (*scanfleet.CloudEnv, error)
	// Attackers returns the ids of the VMs that can attack vmID in the
	// workspace's cloud environment, sorted; ENOTFOUND for an unknown VM.
	Attackers(ctx context.Context, workspace, vmID string, mode attacksurface.Mode) ([]string, error)
}

// Config configures the UI.
type Config struct {
	// Backend is the server the UI shows and changes. Required.
	Backend Backend
	// Logger receives errors. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// SessionTTL is how long a sign-in lasts. Default 12 hours.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions kept in memory; beyond it the oldest
	// is dropped. Default 10000.
	MaxSessions int
	// MaxUploadBytes bounds an uploaded cloud environment. Default 256 MiB.
	MaxUploadBytes int64
	// SecureCookies marks the session cookie Secure on plain-HTTP requests
	// too, for a server behind a TLS proxy. Default false; a request that
	// came over TLS always gets a Secure cookie.
	SecureCookies bool
	// Version is shown in the footer. Default "dev".
	Version string
}

// WithDefaults returns the config with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.SessionTTL = cmp.Or(c.SessionTTL, 12*time.Hour)
	c.MaxSessions = cmp.Or(c.MaxSessions, 10000)
	c.MaxUploadBytes = cmp.Or(c.MaxUploadBytes, 256<<20)
	c.Version = cmp.Or(c.Version, "dev")
	return c
}

func (c Config) validate() error {
	switch {
	case c.Backend == nil:
		return errors.New("Backend: is nil")
	case c.SessionTTL < time.Minute:
		return fmt.Errorf("SessionTTL: %s is shorter than a minute", c.SessionTTL)
	case c.MaxSessions < 1:
		return fmt.Errorf("MaxSessions: must be positive, got %d", c.MaxSessions)
	case c.MaxUploadBytes < 1:
		return fmt.Errorf("MaxUploadBytes: must be positive, got %d", c.MaxUploadBytes)
	}
	return nil
}

// UI is the web UI's handler.
type UI struct {
	cfg      Config
	b        Backend
	logger   *slog.Logger
	pages    map[string]*pageTemplate
	sessions *sessions
	handler  http.Handler
}

// New returns the UI over cfg.Backend.
func New(cfg Config) (*UI, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("html config: %w", err)
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, fmt.Errorf("parse templates: %w", err)
	}
	u := &UI{cfg: cfg, b: cfg.Backend, logger: cfg.Logger, pages: pages,
		sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions, cfg.Now)}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.renderError(w, r, nil, scanfleet.Errorf(scanfleet.EFORBIDDEN, "cross-origin request refused: changes can only be made from this site's own pages"))
	}))
	u.handler = cop.Handler(u.routes())
	return u, nil
}

// ServeHTTP serves the UI.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	u.handler.ServeHTTP(w, r)
}

func (u *UI) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The files change only with the binary; a version in the URL
		// would be the way to cache them longer.
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /signin", u.handleSignInForm)
	mux.HandleFunc("POST /signin", u.handleSignIn)
	mux.HandleFunc("POST /signout", u.handleSignOut)

	view := func(pattern string, h handler) { mux.Handle(pattern, u.auth(scanfleet.RoleViewer, h)) }
	change := func(pattern string, h handler) { mux.Handle(pattern, u.auth(scanfleet.RoleOperator, h)) }

	view("GET /{$}", u.handleDashboard)
	view("GET /workspaces", u.handleWorkspaces)
	change("POST /workspaces", u.handleCreateWorkspace)
	view("GET /workspaces/{ws}", u.handleWorkspace)
	change("POST /workspaces/{ws}", u.handleUpdateWorkspace)

	view("GET /scans", u.handleScans)
	view("GET /scans/new", u.handleNewScan)
	change("POST /scans", u.handleCreateScan)
	view("GET /scans/{id}", u.handleScan)
	change("POST /scans/{id}", u.handleUpdateScan)
	change("POST /scans/{id}/enabled", u.handleEnableScan)
	change("POST /scans/{id}/run", u.handleRunScan)

	view("GET /tasks", u.handleTasks)
	view("GET /tasks/{id}", u.handleTask)
	view("GET /tasks/{id}/status", u.handleTaskStatus)
	view("GET /tasks/{id}/logs", u.handleTaskLogs)
	change("POST /tasks/{id}/cancel", u.handleCancelTask)

	view("GET /workers", u.handleWorkers)
	view("GET /inventory", u.handleInventory)
	view("GET /inventory/export", u.handleExport)
	view("GET /attack", u.handleAttack)
	change("POST /attack", u.handleUploadCloud)

	mux.Handle("/", u.auth(scanfleet.RoleViewer, func(w http.ResponseWriter, r *http.Request, _ *session) error {
		return scanfleet.Errorf(scanfleet.ENOTFOUND, "no page at %s", r.URL.Path)
	}))
	return mux
}
