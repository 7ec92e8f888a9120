package http

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/launcher"
)

const workerKey ctxKey = 1

// workerFrom returns the worker that authenticated the request.
func workerFrom(ctx context.Context) *scanfleet.Worker {
	w, _ := ctx.Value(workerKey).(*scanfleet.Worker)
	return w
}

// workerAuth requires a worker credential. API tokens are refused here,
// and a worker credential is refused everywhere else, since the two are
// looked up in different tables.
func (s *Server) workerAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		secret = strings.TrimSpace(secret)
		if !ok || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(secret, scanfleet.WorkerCredPrefix) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scanfleet-worker"`)
			s.writeError(w, r, scanfleet.Errorf(scanfleet.EUNAUTHORIZED, "missing worker credential: send \"Authorization: Bearer sfw_…\""))
			return
		}
		wk, err := s.findWorker(r.Context(), scanfleet.HashToken(secret))
		if scanfleet.ErrorCode(err) == scanfleet.ENOTFOUND {
			s.writeError(w, r, scanfleet.Errorf(scanfleet.EUNAUTHORIZED, "unknown or revoked worker credential"))
			return
		} else if err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), workerKey, wk)))
	})
}

// EnrolRequest is what a worker sends to enrol; see scanfleet.EnrolRequest.
type EnrolRequest = scanfleet.EnrolRequest

// EnrolResponse is the answer to an enrolment; see scanfleet.EnrolResponse.
type EnrolResponse = scanfleet.EnrolResponse

// Enrol validates an enrolment request and stores the worker. It is used by
// the HTTP route and by the server's own in-process workers.
func (s *Server) Enrol(ctx context.Context, req EnrolRequest) (*EnrolResponse, error) {
	pool, err := scanfleet.ParsePool(string(req.Pool))
	if err != nil {
		return nil, err
	}
	if req.Site != "" {
		if err := scanfleet.ValidateSlug("site", req.Site); err != nil {
			return nil, err
		}
	}
	if req.Name == "" {
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "name: is empty")
	}
	if req.Concurrency < 1 || req.Concurrency > 10000 {
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "concurrency: %d is not between 1 and 10000", req.Concurrency)
	}
	switch req.Transport {
	case "nats", "http":
	default:
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "transport: %q is not nats or http", req.Transport)
	}
	if pool == scanfleet.PoolBaremetal && !contains(req.Capabilities, scanfleet.RequireRawSockets) {
		return nil, scanfleet.Errorf(scanfleet.EFORBIDDEN, "pool baremetal needs the raw_sockets capability, which this worker did not detect (run it as root or with CAP_NET_RAW)")
	}
	if err := validateTypes(req.Types, req.Executors); err != nil {
		return nil, err
	}
	cred, hash, err := scanfleet.NewSecret(scanfleet.WorkerCredPrefix)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	wk := &scanfleet.Worker{
		ID: scanfleet.NewID(), Name: req.Name, Pool: pool, Site: req.Site, Version: req.Version,
		Capabilities: req.Capabilities, Executors: req.Executors, Types: req.Types, Transport: req.Transport,
		Concurrency: req.Concurrency, Hash: hash, CreatedAt: now, LastSeenAt: now,
	}
	if err := s.store.EnrolWorker(ctx, scanfleet.HashToken(req.JoinToken), wk, now); err != nil {
		return nil, err
	}
	s.registerTypes(wk)
	if s.cfg.OnEnrol != nil {
		if err := s.cfg.OnEnrol(ctx, wk); err != nil {
			return nil, fmt.Errorf("prepare the queue of worker %s: %w", wk.ID, err)
		}
	}
	resp := &EnrolResponse{WorkerID: wk.ID, Credential: cred}
	if req.Transport == "nats" && s.cfg.WorkerNATSURL != "" {
		resp.NATS = &scanfleet.NATSEndpoint{URL: s.cfg.WorkerNATSURL, CA: s.cfg.WorkerNATSCA}
	}
	return resp, nil
}

// validateTypes checks announced executor types: valid declarations of
// executors the worker names.
func validateTypes(types []scanfleet.ExecutorType, executors []string) error {
	if len(types) > 1000 {
		return scanfleet.Errorf(scanfleet.EINVALID, "types: %d is more than 1000", len(types))
	}
	for i, et := range types {
		t := et.Type()
		if err := t.Validate(); err != nil {
			return scanfleet.Errorf(scanfleet.EINVALID, "types[%d]: %v", i, err)
		}
		if !contains(executors, t.Name) {
			return scanfleet.Errorf(scanfleet.EINVALID, "types[%d]: %s is not among the worker's executors", i, t.Name)
		}
	}
	return nil
}

// registerTypes makes the task types of a worker's external executors
// known, so that scans of them are validated against their manifests. A
// name the server already knows keeps its first declaration.
func (s *Server) registerTypes(wk *scanfleet.Worker) {
	for _, et := range wk.Types {
		t := et.Type()
		if known, err := s.registry.Lookup(t.Name); err == nil {
			if !reflect.DeepEqual(known.Params, t.Params) {
				s.logger.Warn("worker announces a task type the server knows with other params; keeping the first", "type", t.Name, "worker", wk.ID)
			}
			continue
		}
		if err := s.registry.Register(t); err != nil {
			s.logger.Warn("register announced task type", "type", t.Name, "worker", wk.ID, "err", err)
		}
	}
}

// RegisterWorkerTypes registers the task types announced by every stored
// worker; the server calls it when it starts.
func (s *Server) RegisterWorkerTypes(ctx context.Context) error {
	ws, err := s.store.ListWorkers(ctx, s.cfg.Now())
	if err != nil {
		return err
	}
	for _, wk := range ws {
		s.registerTypes(wk)
	}
	return nil
}

// handleAnnounce records what a starting worker says of itself: its
// version, capabilities and executors, with the task types of its external
// executors.
func (s *Server) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	var a scanfleet.Announcement
	if err := s.decodeJSON(w, r, &a); err != nil {
		s.writeError(w, r, err)
		return
	}
	wk := workerFrom(r.Context())
	if err := validateTypes(a.Types, a.Executors); err != nil {
		s.writeError(w, r, err)
		return
	}
	if wk.Pool == scanfleet.PoolBaremetal && !contains(a.Capabilities, scanfleet.RequireRawSockets) {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EFORBIDDEN, "pool baremetal needs the raw_sockets capability, which this worker no longer detects"))
		return
	}
	if err := s.store.AnnounceWorker(r.Context(), wk.ID, a, s.cfg.Now()); err != nil {
		s.writeError(w, r, err)
		return
	}
	updated := *wk
	updated.Version, updated.Capabilities, updated.Executors, updated.Types = a.Version, a.Capabilities, a.Executors, a.Types
	// A worker that starts again announces itself before it binds to its
	// queue, whose site consumer may have gone while no worker pulled.
	if err := s.PrepareQueue(r.Context(), &updated); err != nil {
		s.writeError(w, r, fmt.Errorf("prepare the worker's queue: %w", err))
		return
	}
	s.registerTypes(&updated)
	s.workersMu.Lock()
	delete(s.workers, wk.Hash) // read again with what it announced
	s.workersMu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// PrepareQueue readies the queue of a known worker that starts again
// (its NATS consumers), as enrolment does for a new one.
func (s *Server) PrepareQueue(ctx context.Context, w *scanfleet.Worker) error {
	if s.cfg.OnEnrol == nil {
		return nil
	}
	return s.cfg.OnEnrol(ctx, w)
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (s *Server) handleEnrol(w http.ResponseWriter, r *http.Request) {
	var req EnrolRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.Enrol(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, resp)
}

type createJoinTokenRequest struct {
	Name string             `json:"name"`
	Pool string             `json:"pool"`
	Site string             `json:"site"`
	TTL  scanfleet.Duration `json:"ttl"`
}

func (s *Server) handleCreateJoinToken(w http.ResponseWriter, r *http.Request) {
	var req createJoinTokenRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	jt, secret, err := s.NewJoinToken(r.Context(), req.Name, req.Pool, req.Site, time.Duration(req.TTL))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": jt.ID, "name": jt.Name, "pool": jt.Pool, "site": jt.Site,
		"expires_at": jt.ExpiresAt, "token": secret})
}

// NewJoinToken stores a one-time join token and returns its secret. A zero
// ttl means 24 hours.
func (s *Server) NewJoinToken(ctx context.Context, name, pool, site string, ttl time.Duration) (*scanfleet.JoinToken, string, error) {
	jt := &scanfleet.JoinToken{ID: scanfleet.NewID(), Name: name, Site: site, CreatedAt: s.cfg.Now()}
	if pool != "" {
		p, err := scanfleet.ParsePool(pool)
		if err != nil {
			return nil, "", err
		}
		jt.Pool = p
	}
	if site != "" {
		if err := scanfleet.ValidateSlug("site", site); err != nil {
			return nil, "", err
		}
	}
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	if ttl < 0 {
		return nil, "", scanfleet.Errorf(scanfleet.EINVALID, "ttl: must be positive")
	}
	jt.ExpiresAt = jt.CreatedAt.Add(ttl)
	secret, hash, err := scanfleet.NewSecret(scanfleet.JoinTokenPrefix)
	if err != nil {
		return nil, "", err
	}
	jt.Hash = hash
	if err := s.store.CreateJoinToken(ctx, jt); err != nil {
		return nil, "", err
	}
	return jt, secret, nil
}

func (s *Server) handleListWorkers(w http.ResponseWriter, r *http.Request) {
	ws, err := s.store.ListWorkers(r.Context(), s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(ws, ""))
}

// handleRevokeWorker deletes a worker's credential: its next request is
// refused, its NATS connections are closed (OnRevoke), and the tasks it
// held go to other workers at the next expiry pass.
func (s *Server) handleRevokeWorker(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := pathValue(r, "id")
	wk, err := s.store.FindWorker(ctx, id)
	if err == nil {
		// First, so that a poll already past authentication leases it
		// nothing more; it cannot heartbeat to clear this.
		s.hub.revoke(id)
		err = s.store.RevokeWorker(ctx, id, s.cfg.Now())
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.workersMu.Lock()
	delete(s.workers, wk.Hash)
	s.workersMu.Unlock()
	s.hub.wake(wk.ID)         // an open long poll ends now
	s.hub.NotifyPool(wk.Pool) // its tasks were handed back: others may take them
	if s.cfg.OnRevoke != nil {
		if err := s.cfg.OnRevoke(ctx, wk); err != nil {
			s.logger.Warn("revoke worker: close its connections", "worker", wk.ID, "err", err)
		}
	}
	s.logger.Info("worker revoked", "worker", wk.ID, "name", wk.Name)
	w.WriteHeader(http.StatusNoContent)
}

// handleListJoinTokens lists join tokens without their secrets.
func (s *Server) handleListJoinTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.ListJoinTokens(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(list, ""))
}

// handleDeleteJoinToken revokes a join token.
func (s *Server) handleDeleteJoinToken(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteJoinToken(r.Context(), pathValue(r, "id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleLaunches lists the launcher's attempts, newest first, and what it
// saw of each pool; both are empty when the server launches nothing.
func (s *Server) handleLaunches(w http.ResponseWriter, r *http.Request) {
	var (
		attempts []launcher.Attempt
		pools    []launcher.PoolState
	)
	if s.cfg.Launches != nil {
		attempts, pools = s.cfg.Launches()
	}
	if attempts == nil {
		attempts = []launcher.Attempt{}
	}
	if pools == nil {
		pools = []launcher.PoolState{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": attempts, "pools": pools, "next_cursor": ""})
}

// pollResponse is the answer of a heartbeat or poll: tasks leased to the
// worker and commands for it.
type pollResponse struct {
	Tasks    []*scanfleet.Task `json:"tasks"`
	Commands []Command         `json:"commands"`
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	var hb scanfleet.Heartbeat
	if err := s.decodeJSON(w, r, &hb); err != nil {
		s.writeError(w, r, err)
		return
	}
	wk := workerFrom(r.Context())
	s.hub.setDraining(wk.ID, hb)
	if hb.Draining {
		s.hub.wake(wk.ID) // its open poll ends now, leasing nothing
	}
	if err := s.store.HeartbeatWorker(r.Context(), wk.ID, hb, s.cfg.Now()); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.hub.storedBeat(wk.ID, hb, time.Now()) // so that a poll's throttle knows what is stored
	writeJSON(w, http.StatusOK, pollResponse{Tasks: []*scanfleet.Task{}, Commands: nonNilCmds(s.hub.take(wk.ID))})
}

func nonNilCmds(c []Command) []Command {
	if c == nil {
		return []Command{}
	}
	return c
}

type pollRequest struct {
	Max  int                `json:"max"`
	Wait scanfleet.Duration `json:"wait"`
	scanfleet.Heartbeat
}

// MaxPollWait bounds how long a long poll waits for work.
const MaxPollWait = 30 * time.Second

// handlePoll is the HTTP transport's long poll: it leases up to max
// requested tasks of the worker's pool and site to it, waiting up to wait
// (at most 30 s) for some to arrive, and returns them with any commands.
// Leased tasks are started in the store before the answer is written; if
// the answer is lost, the lease lapses and the task is retried, never
// forgotten.
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	var req pollRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Max < 0 || req.Max > 1000 {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "max: %d is not between 0 and 1000", req.Max))
		return
	}
	wait := min(time.Duration(req.Wait), MaxPollWait)
	ctx := r.Context()
	wk := workerFrom(ctx)
	s.hub.setDraining(wk.ID, req.Heartbeat)
	// A busy worker polls many times a second: its heartbeat is stored
	// at most once a second, or at once when it starts draining.
	if s.hub.dueBeat(wk.ID, req.Heartbeat, time.Now(), time.Second) {
		if err := s.store.HeartbeatWorker(ctx, wk.ID, req.Heartbeat, s.cfg.Now()); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	recheck := time.NewTicker(time.Second)
	defer recheck.Stop()
	f := scanfleet.ClaimFilter{Pool: wk.Pool, Site: wk.Site, Types: s.runnableTypes(wk), Max: req.Max}
	if s.hub.duePull(wk.ID, time.Now(), 500*time.Millisecond) {
		s.pullCancels(ctx, wk) // not at every one of a busy worker's polls
	}
	for {
		woken, done := s.hub.wait(wk.ID, wk.Pool)
		var tasks []*scanfleet.Task
		if req.Max > 0 && !s.hub.isDraining(wk.ID) && len(f.Types) > 0 && ctx.Err() == nil {
			var err error
			tasks, err = s.store.ClaimNext(ctx, f, wk.ID, s.cfg.Lease, s.cfg.Now())
			if err == nil {
				err = s.currentScope(ctx, tasks)
			}
			if err != nil {
				done()
				s.writeError(w, r, err)
				return
			}
			if ctx.Err() != nil {
				// The worker left while its tasks were leased: give them
				// back now rather than let their leases lapse.
				done()
				s.release(wk, tasks)
				return
			}
		}
		cmds := s.hub.take(wk.ID)
		if len(tasks) > 0 || len(cmds) > 0 || s.hub.isDraining(wk.ID) {
			done()
			if tasks == nil {
				tasks = []*scanfleet.Task{}
			}
			// Only a failed write hands the tasks back. Once the answer is
			// flushed, the worker may hold them even if its connection
			// closes now; if it did not get them, their leases lapse.
			if err := writeJSONErr(w, http.StatusOK, pollResponse{Tasks: tasks, Commands: nonNilCmds(cmds)}); err != nil {
				s.release(wk, tasks)
			}
			return
		}
		select {
		case <-woken:
			if s.hub.replaced(wk.ID, woken) {
				// A newer poll of this worker (its connection came back)
				// took over: this one ends empty rather than wake it in
				// turn, again and again.
				done()
				writeJSON(w, http.StatusOK, pollResponse{Tasks: []*scanfleet.Task{}, Commands: []Command{}})
				return
			}
		case <-recheck.C:
			s.pullCancels(ctx, wk)
		case <-deadline.C:
			done()
			writeJSON(w, http.StatusOK, pollResponse{Tasks: []*scanfleet.Task{}, Commands: []Command{}})
			return
		case <-s.stopping:
			done()
			writeJSON(w, http.StatusOK, pollResponse{Tasks: []*scanfleet.Task{}, Commands: nonNilCmds(s.hub.take(wk.ID))})
			return
		case <-ctx.Done():
			done()
			return
		}
		done()
	}
}

// runnableTypes lists the task types the worker may run: it never gets a
// task whose requirements it lacks.
func (s *Server) runnableTypes(wk *scanfleet.Worker) []string {
	var out []string
	for _, t := range s.registry.List() {
		if wk.CanRun(t) {
			out = append(out, t.Name)
		}
	}
	return out
}

func (s *Server) handleClaim(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	wk := workerFrom(ctx)
	t, err := s.store.FindTask(ctx, pathValue(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tt, err := s.registry.Lookup(t.Type)
	if err != nil || !wk.CanRun(tt) || (t.Site != "" && t.Site != wk.Site) {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EFORBIDDEN, "worker %s (pool %s, site %q) may not run task %s (type %s, site %q)", wk.ID, wk.Pool, wk.Site, t.ID, t.Type, t.Site))
		return
	}
	t, err = s.store.ClaimTask(ctx, t.ID, wk.ID, s.cfg.Lease, s.cfg.Now())
	if err == nil {
		err = s.currentScope(ctx, []*scanfleet.Task{t})
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// currentScope gives started tasks their workspace's scope as it is now,
// not as it was when they were created: a scope narrowed while a task
// waited binds it when it starts.
func (s *Server) currentScope(ctx context.Context, tasks []*scanfleet.Task) error {
	type scopeJSON struct{ scope, exclude json.RawMessage }
	scopes := map[string]scopeJSON{}
	for _, t := range tasks {
		sc, ok := scopes[t.Workspace]
		if !ok {
			ws, err := s.store.FindWorkspace(ctx, t.Workspace)
			if err != nil {
				return err
			}
			if sc.scope, err = json.Marshal(ws.Scope); err != nil {
				return err
			}
			if sc.exclude, err = json.Marshal(ws.Scope.Exclude); err != nil {
				return err
			}
			scopes[t.Workspace] = sc
		}
		// Only the two fields change; the rest of the input is kept as
		// it is, undecoded.
		var in map[string]json.RawMessage
		if err := json.Unmarshal(t.Input, &in); err != nil {
			return fmt.Errorf("task %s: input: %w", t.ID, err)
		}
		in["scope"], in["exclude"] = sc.scope, sc.exclude
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		t.Input = b
	}
	return nil
}

type claimRequest struct {
	IDs []string `json:"ids"`
}

// handleClaimBatch claims several dispatched tasks at once; the answer
// lists those claimed, the others are stale or not this worker's.
func (s *Server) handleClaimBatch(w http.ResponseWriter, r *http.Request) {
	var req claimRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	wk := workerFrom(r.Context())
	f := scanfleet.ClaimFilter{Pool: wk.Pool, Site: wk.Site, Types: s.runnableTypes(wk)}
	if s.hub.isDraining(wk.ID) {
		f.Types = nil
	}
	tasks, err := s.store.ClaimTasks(r.Context(), req.IDs, f, wk.ID, s.cfg.Lease, s.cfg.Now())
	if err == nil {
		err = s.currentScope(r.Context(), tasks)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": tasks})
}

type renewRequest struct {
	Progress *scanfleet.Progress `json:"progress"`
	// Attempt, when set, is the attempt the worker runs; a stale one is
	// refused (ECONFLICT) and the worker stops it.
	Attempt int `json:"attempt"`
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	var req renewRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	wk := workerFrom(r.Context())
	if req.Attempt != 0 {
		if _, err := s.holds(r.Context(), wk, pathValue(r, "id"), req.Attempt); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	t, err := s.store.RenewLease(r.Context(), pathValue(r, "id"), wk.ID, s.cfg.Lease, req.Progress, s.cfg.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cancel_requested": t.CancelRequested, "lease_expires_at": t.LeaseExpiresAt})
}

// holds checks that the worker holds the started task.
//
// attempt, when not zero, is the attempt the worker runs: a worker whose
// lease lapsed and that took the same task again must not go on changing
// it from its earlier, stale run.
func (s *Server) holds(ctx context.Context, wk *scanfleet.Worker, id string, attempt int) (*scanfleet.Task, error) {
	t, err := s.store.FindTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status != scanfleet.TaskStarted || t.WorkerID != wk.ID {
		return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "worker %s does not hold task %s (it is %s)", wk.ID, id, t.Status)
	}
	if attempt != 0 && attempt != t.Attempts {
		return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "attempt %d of task %s is over; the task is on attempt %d", attempt, id, t.Attempts)
	}
	return t, nil
}

// attemptParam reads the ?attempt= of a worker request, 0 when absent.
func attemptParam(r *http.Request) int {
	n, _ := strconv.Atoi(r.URL.Query().Get("attempt"))
	return n
}

// handleWorkerCloud gives a worker of the internal or baremetal pool the
// cloud environment of the workspace of a task it holds (task data access).
func (s *Server) handleWorkerCloud(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	wk := workerFrom(ctx)
	if wk.Pool == scanfleet.PoolExternal {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EFORBIDDEN, "workers of the external pool have no task data access"))
		return
	}
	t, err := s.holds(ctx, wk, pathValue(r, "id"), attemptParam(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ce, err := s.store.GetCloud(ctx, t.Workspace)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Last-Modified", ce.UpdatedAt.UTC().Format(http.TimeFormat))
	_, _ = w.Write(ce.Data)
}

type logsRequest struct {
	Lines []string `json:"lines"`
}

func (s *Server) handleWorkerLogs(w http.ResponseWriter, r *http.Request) {
	var req logsRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx := r.Context()
	t, err := s.holds(ctx, workerFrom(ctx), pathValue(r, "id"), attemptParam(r))
	if err == nil {
		err = s.store.AppendTaskLogs(ctx, t.ID, req.Lines, s.cfg.Now())
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleWorkerRecords ingests one chunk of a task's records, JSON Lines,
// into the task's workspace. Redelivered chunks and retried attempts upsert
// the same natural keys, so they never duplicate records.
func (s *Server) handleWorkerRecords(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := s.holds(ctx, workerFrom(ctx), pathValue(r, "id"), attemptParam(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	recs, err := scanfleet.ParseRecords(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), s.cfg.MaxLineBytes)
	if err != nil {
		s.writeError(w, r, bodyError(err, s.cfg.MaxBodyBytes))
		return
	}
	res, err := s.store.UpsertRecords(ctx, t.Workspace, t.ID, recs, s.cfg.Now())
	if err == nil {
		err = s.store.AddTaskRecords(ctx, t.ID, int64(len(recs)))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.metrics.observeIngest(res, 0)
	writeJSON(w, http.StatusOK, res)
}

type finishRequest struct {
	// TaskID names the task in a batch; the single route takes it from
	// the path.
	TaskID string               `json:"task_id,omitempty"`
	Status scanfleet.TaskStatus `json:"status"`
	Output json.RawMessage      `json:"output"`
	Error  string               `json:"error"`
	// Logs and Progress are the task's last log lines and progress, sent
	// with the outcome to save round trips for short tasks.
	Logs     []string            `json:"logs"`
	Progress *scanfleet.Progress `json:"progress"`
	Attempt  int                 `json:"attempt"`
}

func (s *Server) handleFinish(w http.ResponseWriter, r *http.Request) {
	var req finishRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	req.TaskID = pathValue(r, "id")
	tasks, errs, err := s.finish(r.Context(), workerFrom(r.Context()), []finishRequest{req})
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.store.FindTask(r.Context(), tasks[0].ID) // the whole task, as it now is
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// maxFinishBatch bounds the outcomes of one batch request.
const maxFinishBatch = 1000

// finishResult is the answer for one outcome of a batch.
type finishResult struct {
	TaskID string                 `json:"task_id"`
	Status scanfleet.TaskStatus   `json:"status,omitempty"`
	Error  *scanfleet.ErrorDetail `json:"error,omitempty"`
}

// handleFinishBatch applies several outcomes in one store transaction:
// a worker running many short tasks reports them together.
func (s *Server) handleFinishBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Outcomes []finishRequest `json:"outcomes"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(req.Outcomes) > maxFinishBatch {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "outcomes: %d is more than %d", len(req.Outcomes), maxFinishBatch))
		return
	}
	tasks, errs, err := s.finish(r.Context(), workerFrom(r.Context()), req.Outcomes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res := make([]finishResult, len(req.Outcomes))
	for i, o := range req.Outcomes {
		res[i].TaskID = o.TaskID
		if errs[i] != nil {
			code := scanfleet.ErrorCode(errs[i])
			if code == scanfleet.EINTERNAL {
				s.logger.Error("finish task", slog.String("task", o.TaskID), slog.Any("err", errs[i]))
			}
			res[i].Error = &scanfleet.ErrorDetail{Code: code, Message: scanfleet.ErrorMessage(errs[i])}
		} else {
			res[i].Status = tasks[i].Status
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": res})
}

// finish stores outcomes reported by wk. A refused outcome has its error
// at its index; a hand-back wakes the pool's long-polling workers.
func (s *Server) finish(ctx context.Context, wk *scanfleet.Worker, reqs []finishRequest) ([]*scanfleet.Task, []error, error) {
	outs := make([]scanfleet.Outcome, 0, len(reqs))
	errs := make([]error, len(reqs))
	idx := make([]int, 0, len(reqs))
	for i, req := range reqs {
		switch req.Status {
		case scanfleet.TaskFinished, scanfleet.TaskFailed, scanfleet.TaskCancelled, scanfleet.TaskRequested:
		default:
			errs[i] = scanfleet.Errorf(scanfleet.EINVALID, "status: %q is not finished, failed, cancelled or requested", req.Status)
			continue
		}
		if req.TaskID == "" {
			errs[i] = scanfleet.Errorf(scanfleet.EINVALID, "task_id: is empty")
			continue
		}
		c := scanfleet.TaskChange{Status: req.Status, Output: req.Output}
		if req.Error != "" {
			c.Error = &req.Error
		}
		outs = append(outs, scanfleet.Outcome{TaskID: req.TaskID, Attempt: req.Attempt, Change: c, Logs: req.Logs, Progress: req.Progress})
		idx = append(idx, i)
	}
	tasks := make([]*scanfleet.Task, len(reqs))
	if len(outs) == 0 {
		return tasks, errs, nil
	}
	done, derrs, err := s.store.FinishTasks(ctx, wk.ID, outs, s.cfg.Now())
	if err != nil {
		return nil, nil, err
	}
	notified := false
	for j, i := range idx {
		tasks[i], errs[i] = done[j], derrs[j]
		if derrs[j] == nil && done[j].Status == scanfleet.TaskRequested && !notified {
			// Handed back: long-polling workers may take it now. A NATS
			// worker releases its dispatch to the queue itself.
			s.hub.NotifyPool(done[j].Pool)
			notified = true
		}
	}
	return tasks, errs, nil
}

// handleCancelTask cancels a task: at once when it has not started, else
// by telling its worker, which stops it (its process group, for external
// programs) and reports it cancelled.
func (s *Server) handleCancelTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.cancelTask(r.Context(), pathValue(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, t)
}

// cancelTask cancels a task at once when it has not started, else tells
// its worker, which stops it and reports it cancelled.
func (s *Server) cancelTask(ctx context.Context, id string) (*scanfleet.Task, error) {
	t, err := s.store.RequestCancel(ctx, id, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	s.sendCancel(ctx, t)
	return t, nil
}

// sendCancel tells the worker running t, if any, to stop it: in its next
// poll answer (HTTP) and on its command subject (NATS).
func (s *Server) sendCancel(ctx context.Context, t *scanfleet.Task) {
	if t.Status != scanfleet.TaskStarted || t.WorkerID == "" {
		return
	}
	cmd := Command{Type: "cancel", TaskID: t.ID}
	s.hub.push(t.WorkerID, cmd)
	if s.cfg.Commands != nil {
		if err := s.cfg.Commands.Command(ctx, t.WorkerID, cmd); err != nil {
			s.logger.Warn("send cancel", "task", t.ID, "worker", t.WorkerID, "err", err)
		}
	}
}

// workerCacheTTL is how long a worker looked up by its credential is
// remembered, so that the hot worker routes do not read the store for
// every request.
const workerCacheTTL = 5 * time.Second

type cachedWorker struct {
	w       *scanfleet.Worker
	expires time.Time
}

func (s *Server) findWorker(ctx context.Context, hash string) (*scanfleet.Worker, error) {
	now := time.Now()
	s.workersMu.Lock()
	c, ok := s.workers[hash]
	s.workersMu.Unlock()
	if ok && now.Before(c.expires) {
		return c.w, nil
	}
	wk, err := s.store.FindWorkerByHash(ctx, hash)
	if err != nil {
		return nil, err
	}
	s.workersMu.Lock()
	if len(s.workers) > 10000 {
		clear(s.workers)
	}
	s.workers[hash] = cachedWorker{w: wk, expires: now.Add(workerCacheTTL)}
	s.workersMu.Unlock()
	return wk, nil
}

// release hands back tasks leased to a worker whose poll answer could not
// be delivered.
func (s *Server) release(wk *scanfleet.Worker, tasks []*scanfleet.Task) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, t := range tasks {
		msg := "handed back: the poll that leased it was abandoned"
		if _, err := s.store.FinishTask(ctx, t.ID, wk.ID, scanfleet.TaskChange{Status: scanfleet.TaskRequested, Error: &msg}, s.cfg.Now()); err != nil {
			s.logger.Warn("release task of an abandoned poll", "task", t.ID, "err", err)
		}
	}
	if len(tasks) > 0 {
		s.hub.NotifyPool(wk.Pool)
	}
}

// pullCancels queues a cancel command for each task the worker runs whose
// cancel was requested in the store: a cancel made through another server
// replica reaches a long-polling worker within a second this way.
func (s *Server) pullCancels(ctx context.Context, wk *scanfleet.Worker) {
	tasks, _, err := s.store.ListTasks(ctx, scanfleet.TaskFilter{WorkerID: wk.ID, CancelRequested: true, Page: scanfleet.Page{Limit: 100}})
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("look for cancel requests", "worker", wk.ID, "err", err)
		}
		return
	}
	for _, t := range tasks {
		s.hub.pushOnce(wk.ID, Command{Type: scanfleet.CommandCancel, TaskID: t.ID})
	}
}
