package http

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/launcher"
	"github.com/scanfleet/scanfleet/scheduler"
)

// Config configures a Server.
type Config struct {
	// Addr is the address to listen on. Default "127.0.0.1:8080"; port 0
	// picks a free port (see Server.Addr).
	Addr string
	// MaxBodyBytes bounds a request body. Default scanfleet.DefaultMaxBodyBytes (10 MiB).
	MaxBodyBytes int64
	// MaxCloudBytes bounds an uploaded cloud environment. Default 256 MiB.
	MaxCloudBytes int64
	// MaxLineBytes bounds one line of a JSON Lines body. Default scanfleet.DefaultMaxLineBytes (1 MiB).
	MaxLineBytes int
	// Version is reported by /api/v1/health. Default "dev".
	Version string
	// Logger receives request errors. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Lease is how long a worker holds a task between renewals. Default
	// scanfleet.DefaultLease (30 s).
	Lease time.Duration
	// WorkerNATSURL is the NATS URL given to enrolling NATS workers; ""
	// when the server has no NATS.
	WorkerNATSURL string
	// WorkerNATSCA is the PEM a NATS worker trusts for a tls:// URL; ""
	// for none (nats://, or a publicly signed certificate).
	WorkerNATSCA string
	// Commands delivers commands to NATS workers; nil without NATS.
	Commands CommandBus
	// OnEnrol is called after a worker enrolled, to prepare its queue
	// (NATS consumers). Optional.
	OnEnrol func(ctx context.Context, w *scanfleet.Worker) error
	// OnRevoke is called after a worker was revoked, to close its NATS
	// connections. Optional.
	OnRevoke func(ctx context.Context, w *scanfleet.Worker) error
	// RunScan starts a run of a scan now (the scheduler's RunNow): the
	// tasks it created, and those of a run already in flight. Default: a
	// scheduler of this server's own, without capacity limits.
	RunScan func(ctx context.Context, scanID string) (created, inFlight []*scanfleet.Task, err error)
	// Launches reports the launcher's attempts and pools for
	// GET /api/v1/launches. Optional.
	Launches func() ([]launcher.Attempt, []launcher.PoolState)
	// TasksCreated is called with the tasks a request created, to
	// dispatch the requested ones at once (router.Submit). Optional.
	TasksCreated func([]*scanfleet.Task)
}

// WithDefaults returns the config with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.Addr = cmp.Or(c.Addr, "127.0.0.1:8080")
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, scanfleet.DefaultMaxBodyBytes)
	c.MaxLineBytes = cmp.Or(c.MaxLineBytes, scanfleet.DefaultMaxLineBytes)
	c.MaxCloudBytes = cmp.Or(c.MaxCloudBytes, 256<<20)
	c.Version = cmp.Or(c.Version, "dev")
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Lease = cmp.Or(c.Lease, scanfleet.DefaultLease)
	return c
}

func (c Config) validate() error {
	if c.MaxBodyBytes < 1 {
		return fmt.Errorf("MaxBodyBytes: must be positive, got %d", c.MaxBodyBytes)
	}
	if c.MaxLineBytes < 1 {
		return fmt.Errorf("MaxLineBytes: must be positive, got %d", c.MaxLineBytes)
	}
	if int64(c.MaxLineBytes) > c.MaxBodyBytes {
		return fmt.Errorf("MaxLineBytes: %d is larger than MaxBodyBytes %d", c.MaxLineBytes, c.MaxBodyBytes)
	}
	return nil
}

// Server is the scanfleet HTTP server.
type Server struct {
	cfg      Config
	store    scanfleet.Store
	registry *scanfleet.Registry
	startRun func(ctx context.Context, scanID string) (created, inFlight []*scanfleet.Task, err error)
	logger   *slog.Logger
	router   chi.Router
	metrics  *metrics
	graphs   graphCache
	hub      *hub

	mu   sync.Mutex
	ln   net.Listener
	srv  *http.Server
	done chan struct{}

	// stopping is closed when Stop begins: long polls and followed logs,
	// which would otherwise hold the shutdown for as long as they wait,
	// end then.
	stopping chan struct{}
	stopOnce sync.Once
	// fresh are the connections that have not sent a request yet, which
	// Stop closes: http.Server.Shutdown waits five seconds for each (a
	// client's spare connection, dialled and never used).
	freshMu sync.Mutex
	fresh   map[net.Conn]struct{}

	workersMu sync.Mutex
	workers   map[string]cachedWorker // credential hash → worker

	touchMu sync.Mutex
	touched map[string]time.Time // token id → last time we stored its use
}

// NewServer returns a server over store for the task types in registry.
func NewServer(store scanfleet.Store, registry *scanfleet.Registry, cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("http config: %w", err)
	}
	s := &Server{
		cfg: cfg, store: store, registry: registry, logger: cfg.Logger,
		touched:  map[string]time.Time{},
		hub:      newHub(),
		workers:  map[string]cachedWorker{},
		stopping: make(chan struct{}),
		fresh:    map[net.Conn]struct{}{},
	}
	s.metrics = newMetrics(store)
	s.startRun = cfg.RunScan
	if s.startRun == nil {
		sch, err := scheduler.New(store, registry, scheduler.Config{TasksCreated: cfg.TasksCreated, Logger: cfg.Logger, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		s.startRun = sch.RunNow
	}
	s.router = s.routes()
	return s, nil
}

// Handler returns the server's handler, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.router }

// Start listens on Config.Addr and serves in the background until Stop.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ConnState:         s.connState,
	}
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http serve", slog.Any("err", err))
		}
	}()
	return nil
}

// Addr returns the address the server listens on, nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL returns the server's base URL, "" before Start.
func (s *Server) URL() string {
	a := s.Addr()
	if a == nil {
		return ""
	}
	return "http://" + a.String()
}

// Stop stops accepting requests and waits up to ctx for those in flight.
// Open long polls answer at once with no tasks (their workers poll again,
// and find the server back or retry until it is), followed logs end (their
// clients resume from the last line), and connections that have not sent
// a request are closed.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.freshMu.Lock()
		for c := range s.fresh {
			_ = c.Close()
		}
		clear(s.fresh)
		s.freshMu.Unlock()
	})
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	<-done
	return err
}

// connState keeps the connections that have not sent a request yet, and
// closes those accepted once Stop began.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.freshMu.Lock()
	defer s.freshMu.Unlock()
	if st != http.StateNew {
		delete(s.fresh, c)
		return
	}
	select {
	case <-s.stopping:
		_ = c.Close()
	default:
		s.fresh[c] = struct{}{}
	}
}

// routes builds the router. Every route added here must be described in
// openapi.go; TestOpenAPICoversRoutes fails otherwise.
func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(s.metrics.middleware, s.recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.ENOTFOUND, "no route for %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.ENOTALLOWED, "method %s is not allowed on %s", r.Method, r.URL.Path))
	})
	r.Get("/api/v1/health", s.handleHealth)
	r.With(s.auth(scanfleet.RoleViewer)).Get("/metrics", s.metrics.handler().ServeHTTP)

	r.Route("/api/v1", func(r chi.Router) {
		viewer := r.With(s.auth(scanfleet.RoleViewer))
		operator := r.With(s.auth(scanfleet.RoleOperator))
		admin := r.With(s.auth(scanfleet.RoleAdmin))

		viewer.Get("/openapi.json", s.handleOpenAPI)
		viewer.Get("/task-types", s.handleListTaskTypes)

		viewer.Get("/workspaces", s.handleListWorkspaces)
		operator.Post("/workspaces", s.handleCreateWorkspace)
		viewer.Get("/workspaces/{ws}", s.handleGetWorkspace)
		operator.Patch("/workspaces/{ws}", s.handleUpdateWorkspace)
		operator.Delete("/workspaces/{ws}", s.handleDeleteWorkspace)
		viewer.Get("/workspaces/{ws}/records", s.handleListRecords)
		operator.Post("/workspaces/{ws}/records", s.handleIngestRecords)
		viewer.Get("/workspaces/{ws}/scope/check", s.handleCheckScope)
		viewer.Get("/workspaces/{ws}/cloud", s.handleGetCloud)
		operator.Put("/workspaces/{ws}/cloud", s.handlePutCloud)
		viewer.Get("/workspaces/{ws}/attack", s.handleAttack)
		viewer.Get("/workspaces/{ws}/webhook", s.handleGetWebhook)
		operator.Put("/workspaces/{ws}/webhook", s.handlePutWebhook)
		operator.Delete("/workspaces/{ws}/webhook", s.handleDeleteWebhook)
		viewer.Get("/workspaces/{ws}/webhook/deliveries", s.handleListDeliveries)

		viewer.Get("/scans", s.handleListScans)
		operator.Post("/scans", s.handleCreateScan)
		viewer.Get("/scans/{id}", s.handleGetScan)
		operator.Patch("/scans/{id}", s.handleUpdateScan)
		operator.Delete("/scans/{id}", s.handleDeleteScan)
		operator.Post("/scans/{id}/run", s.handleRunScan)
		viewer.Get("/scans/{id}/history", s.handleScanHistory)

		viewer.Get("/tasks", s.handleListTasks)
		operator.Post("/tasks", s.handleCreateTask)
		viewer.Get("/tasks/{id}", s.handleGetTask)
		viewer.Get("/tasks/{id}/logs", s.handleTaskLogs)
		operator.Post("/tasks/{id}/cancel", s.handleCancelTask)
		viewer.Get("/tasks/{id}/artifacts", s.handleListArtifacts)
		viewer.Get("/tasks/{id}/artifacts/{name}", s.handleGetArtifact)

		viewer.Get("/workers", s.handleListWorkers)
		viewer.Get("/launches", s.handleLaunches)
		admin.Delete("/workers/{id}", s.handleRevokeWorker)
		admin.Get("/worker-tokens", s.handleListJoinTokens)
		admin.Post("/worker-tokens", s.handleCreateJoinToken)
		admin.Delete("/worker-tokens/{id}", s.handleDeleteJoinToken)
		r.Post("/workers/enrol", s.handleEnrol)
		r.Route("/worker", func(r chi.Router) {
			r.Use(s.workerAuth)
			r.Post("/heartbeat", s.handleHeartbeat)
			r.Post("/announce", s.handleAnnounce)
			r.Post("/poll", s.handlePoll)
			r.Post("/claim", s.handleClaimBatch)
			r.Post("/tasks/{id}/claim", s.handleClaim)
			r.Post("/tasks/{id}/renew", s.handleRenew)
			r.Post("/tasks/{id}/logs", s.handleWorkerLogs)
			r.Post("/tasks/{id}/records", s.handleWorkerRecords)
			r.Put("/tasks/{id}/artifacts/{name}", s.handleWorkerArtifact)
			r.Post("/tasks/{id}/finish", s.handleFinish)
			r.Post("/finish", s.handleFinishBatch)
			r.Get("/tasks/{id}/cloud", s.handleWorkerCloud)
		})

		admin.Get("/tokens", s.handleListTokens)
		admin.Post("/tokens", s.handleCreateToken)
		admin.Delete("/tokens/{id}", s.handleDeleteToken)
	})
	r.Mount("/", s.ui()) // the web UI (http/ui.go, http/html); /api paths it gets are answered in JSON
	return r
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.logger.Error("health: store ping", slog.Any("err", err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "version": s.cfg.Version})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}

// decodeJSON reads a JSON request body into v: one value, no unknown
// fields, at most MaxBodyBytes. Errors name the problem and where.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return scanfleet.Errorf(scanfleet.EUNSUPPORTED, "body: content type %q is not application/json", ct)
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return bodyError(err, s.cfg.MaxBodyBytes)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return bodyError(err, s.cfg.MaxBodyBytes)
		}
		return scanfleet.Errorf(scanfleet.EINVALID, "body: data after the JSON value at byte %d", dec.InputOffset())
	}
	return nil
}

func bodyError(err error, limit int64) error {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
		me *http.MaxBytesError
	)
	switch {
	case errors.As(err, &me):
		return scanfleet.Errorf(scanfleet.ETOOLARGE, "body: larger than the %d-byte limit", limit)
	case errors.As(err, &se):
		return scanfleet.Errorf(scanfleet.EINVALID, "body: malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return scanfleet.Errorf(scanfleet.EINVALID, "%s: JSON %s where %s was expected", field, te.Value, jsonTypeName(te.Type.String()))
	case errors.Is(err, io.EOF):
		return scanfleet.Errorf(scanfleet.EINVALID, "body: is empty; a JSON object was expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return scanfleet.Errorf(scanfleet.EINVALID, "body: malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return scanfleet.Errorf(scanfleet.EINVALID, "body: unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	var appErr *scanfleet.Error
	if errors.As(err, &appErr) {
		return appErr
	}
	// Errors from a field's own UnmarshalJSON (Duration, say).
	return scanfleet.Errorf(scanfleet.EINVALID, "body: %v", err)
}

func jsonTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.Contains(goType, "."):
		return "an object"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "bool":
		return "a boolean"
	}
	return "a " + goType
}

// page reads the cursor and limit query parameters.
func page(r *http.Request) (scanfleet.Page, error) {
	p := scanfleet.Page{Cursor: r.URL.Query().Get("cursor")}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return p, scanfleet.Errorf(scanfleet.EINVALID, "limit: %q is not a number", v)
		}
		p.Limit = n
	}
	return p.Normalize()
}

// list is the JSON shape of every list response.
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func newList[T any](items []T, next string) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items, NextCursor: next}
}

func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, scanfleet.Errorf(scanfleet.EINVALID, "%s: %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", name, v)
	}
	return t, nil
}

// NotifyPool wakes the long polls of the pool's HTTP workers: tasks for it
// were just requested.
func (s *Server) NotifyPool(pool scanfleet.Pool) { s.hub.NotifyPool(pool) }
