package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Config configures a Worker.
type Config struct {
	// Client calls the server's worker API. Required.
	Client *Client
	// WorkerID is the worker's id, for logs.
	WorkerID string
	// Source delivers tasks and commands. Required.
	Source Source
	// Executors run the task types this worker knows.
	Executors []scanfleet.Executor
	// Concurrency is how many tasks run at once. Default 4. As many more
	// ended runs may wait for their outcome to reach the server.
	Concurrency int
	// IdleTimeout makes Run return after this long without a task; zero
	// means never.
	IdleTimeout time.Duration
	// DrainTimeout is how long running tasks may go on after shutdown
	// began before they are handed back for another worker. Default 0:
	// hand them back at once.
	DrainTimeout time.Duration
	// Lease is the server's lease; the worker renews at a third of it.
	// Default scanfleet.DefaultLease.
	Lease time.Duration
	// PollWait is how long one poll waits for work. Default 25 s.
	PollWait time.Duration
	// RecordChunk is how many records go to the server per request.
	// Default 1000.
	RecordChunk int
	// MaxChunkBytes bounds one records request. Default 1 MiB.
	MaxChunkBytes int
	// LogFlush is how often buffered log lines are sent. Default 250 ms.
	LogFlush time.Duration
	// HeartbeatInterval is how often the worker reports itself. Default 10 s.
	HeartbeatInterval time.Duration
	// Data gives executors that need task data access to it; nil for
	// workers without it.
	Data scanfleet.TaskData
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Concurrency = cmp.Or(c.Concurrency, 4)
	c.Lease = cmp.Or(c.Lease, scanfleet.DefaultLease)
	c.PollWait = cmp.Or(c.PollWait, 25*time.Second)
	c.RecordChunk = cmp.Or(c.RecordChunk, 1000)
	c.MaxChunkBytes = cmp.Or(c.MaxChunkBytes, 1<<20)
	c.LogFlush = cmp.Or(c.LogFlush, 250*time.Millisecond)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("Client: is required")
	case c.Source == nil:
		return errors.New("Source: is required")
	case c.Concurrency < 1:
		return fmt.Errorf("Concurrency: %d is not positive", c.Concurrency)
	case c.Lease < 3*time.Millisecond:
		return fmt.Errorf("Lease: %s is too short", c.Lease)
	case c.RecordChunk < 1:
		return fmt.Errorf("RecordChunk: %d is not positive", c.RecordChunk)
	}
	return nil
}

// Worker runs tasks; see the package documentation.
type Worker struct {
	cfg       Config
	executors map[string]scanfleet.Executor
	log       *slog.Logger

	mu        sync.Mutex
	session   string // random per process; see scanfleet.Heartbeat
	drainOnce sync.Once
	running   map[*taskRun]bool // the runs under way; one task may have two, attempts apart
	done      chan *taskRun     // runs that ended
	freed     chan struct{}     // a run ended: a slot is free
	reports   chan report       // outcomes for the reporter
	reporting chan struct{}     // a token per ended run whose outcome is on its way
	revoked   chan struct{}     // closed when the server refused the credential
	revokeOne sync.Once
}

// errRevoked stops the tasks of a worker whose credential was revoked.
var errRevoked = errors.New("the server refused this worker's credential: it was revoked")

// checkRevoked notes a refused credential: the worker stops.
func (w *Worker) checkRevoked(err error) {
	if scanfleet.ErrorCode(err) == scanfleet.EUNAUTHORIZED {
		w.revokeOne.Do(func() {
			w.log.Error("credential refused: stopping", slog.Any("err", err))
			close(w.revoked)
		})
	}
}

// New returns a worker.
func New(cfg Config) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	w := &Worker{cfg: cfg, executors: map[string]scanfleet.Executor{}, running: map[*taskRun]bool{},
		log: cfg.Logger.With(slog.String("worker", cfg.WorkerID)), done: make(chan *taskRun, cfg.Concurrency),
		freed: make(chan struct{}, 1), reports: make(chan report, cfg.Concurrency), revoked: make(chan struct{}),
		reporting: make(chan struct{}, cfg.Concurrency)}
	for _, e := range cfg.Executors {
		w.executors[e.TaskType().Name] = e
	}
	w.session = scanfleet.NewID()
	return w, nil
}

// Errors that say why a task's context ended.
var (
	errCancelled = errors.New("cancelled on request")
	errLeaseLost = errors.New("lease lost")
	errDrain     = errors.New("worker is shutting down")
	errTimeout   = errors.New("timeout")
)

// Running returns how many tasks run now.
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// Run takes and runs tasks until ctx ends (then it drains) or the idle
// timeout passes. It returns nil on a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	// Server calls outlive ctx so that a drain can still report.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	stopReports, reportsDone := make(chan struct{}), make(chan struct{})
	go w.reporter(stopReports, reportsDone)
	defer func() { close(stopReports); <-reportsDone }() // after every run reported
	var wg sync.WaitGroup
	defer wg.Wait()

	hbCtx, stopHB := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go w.heartbeats(hbCtx, hbDone)
	defer func() { stopHB(); <-hbDone }()

	lastBusy := time.Now()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		select {
		case <-w.revoked:
			w.mu.Lock()
			for r := range w.running {
				r.cancel(errRevoked)
			}
			w.mu.Unlock()
			wg.Wait()
			return errRevoked
		default:
		}
		w.reap()
		n := w.Running()
		if n > 0 {
			lastBusy = time.Now()
		} else if w.cfg.IdleTimeout > 0 && time.Since(lastBusy) >= w.cfg.IdleTimeout {
			w.log.Info("idle timeout: exiting", slog.Duration("idle", time.Since(lastBusy)))
			return nil
		}
		free := w.cfg.Concurrency - n
		wait := w.cfg.PollWait
		if free == 0 {
			wait = time.Second // poll for commands only
		}
		if w.cfg.IdleTimeout > 0 && n == 0 {
			wait = min(wait, max(w.cfg.IdleTimeout-time.Since(lastBusy), 10*time.Millisecond))
		}
		// The poll is not cut when shutdown begins: the server may have
		// leased tasks in an answer on its way. Shutdown announces the drain
		// (which ends the poll on the server) and cuts the poll only after
		// a grace period; what the answer holds is then handed back.
		pollCtx, stopPoll := context.WithCancel(bg)
		go func() {
			for {
				select {
				case <-w.freed:
					if free == 0 {
						// Full: this poll only waits for commands, and ends
						// as soon as a slot frees up, so the worker takes
						// new tasks at once.
						stopPoll()
						return
					}
				case <-ctx.Done():
					w.announceDrain()
					if w.cfg.Source.Name() != "http" {
						stopPoll() // a cut NATS fetch hands its dispatches back itself
						return
					}
					select {
					case <-time.After(pollGrace):
						stopPoll()
					case <-pollCtx.Done():
					}
					return
				case <-w.revoked:
					stopPoll()
					return
				case <-pollCtx.Done():
					return
				}
			}
		}()
		// A worker of more slots than one claim takes (the server refuses
		// more) fills them over several polls.
		as, cmds, err := w.cfg.Source.Next(pollCtx, min(free, scanfleet.MaxClaim), wait, scanfleet.Heartbeat{Running: n, Session: w.session})
		interrupted := pollCtx.Err() != nil
		stopPoll()
		if ctx.Err() != nil {
			w.handBack(bg, as)
			break
		}
		if err != nil {
			w.checkRevoked(err)
			if interrupted {
				continue
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			w.log.Warn("poll for tasks", slog.Any("err", err), slog.Duration("retry_in", backoff))
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		w.handle(cmds)
		w.claimAll(ctx, as)
		for _, a := range as {
			lastBusy = time.Now()
			r := w.start(bg, a)
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.execute(bg, r)
				r.free()
			}()
		}
	}
	w.drain()
	return nil
}

// claimAll claims dispatched tasks in one request. A dispatch the store
// refuses is marked stale; if the request fails, each task is claimed on
// its own when it starts.
func (w *Worker) claimAll(ctx context.Context, as []Assignment) {
	var ids []string
	for _, a := range as {
		if a.Task == nil {
			ids = append(ids, a.TaskID)
		}
	}
	if len(ids) < 2 {
		return
	}
	tasks, err := w.cfg.Client.claimBatch(ctx, ids)
	if err != nil {
		w.log.Debug("claim batch; claiming one by one", slog.Any("err", err))
		return
	}
	got := make(map[string]*scanfleet.Task, len(tasks))
	for _, t := range tasks {
		got[t.ID] = t
	}
	for i := range as {
		if as[i].Task == nil {
			as[i].Task = got[as[i].TaskID]
			as[i].stale = as[i].Task == nil
		}
	}
}

// heartbeats reports the worker while it runs; the HTTP long poll does it
// too, NATS workers rely on this.
func (w *Worker) heartbeats(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cmds, err := w.cfg.Client.heartbeat(ctx, scanfleet.Heartbeat{Running: w.Running(), Session: w.session})
		if err != nil && ctx.Err() == nil {
			w.log.Warn("heartbeat", slog.Any("err", err))
			w.checkRevoked(err)
		}
		w.handle(cmds)
	}
}

// handle carries out commands from the server.
func (w *Worker) handle(cmds []Command) {
	for _, c := range cmds {
		switch c.Type {
		case "cancel":
			if w.Cancel(c.TaskID) {
				w.log.Info("cancel requested", slog.String("task", c.TaskID))
			}
		default:
			w.log.Warn("unknown command", slog.String("type", c.Type))
		}
	}
}

// Cancel stops a running task as a cancel command would; it reports
// whether the task was running here.
func (w *Worker) Cancel(taskID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	found := false
	for r := range w.running {
		if r.id == taskID {
			r.cancel(errCancelled)
			found = true
		}
	}
	return found
}

// reap forgets runs that ended.
// forget drops a run that ended.
func (w *Worker) forget(r *taskRun) {
	w.mu.Lock()
	delete(w.running, r)
	w.mu.Unlock()
}

func (w *Worker) reap() {
	for {
		select {
		case r := <-w.done:
			w.forget(r)
		default:
			return
		}
	}
}

// drain stops taking tasks and waits up to DrainTimeout for running ones,
// then hands the rest back.
func (w *Worker) drain() {
	n := w.Running()
	if n == 0 {
		return
	}
	w.log.Info("draining", slog.Int("running", n), slog.Duration("timeout", w.cfg.DrainTimeout))
	w.announceDrain()
	deadline := time.After(w.cfg.DrainTimeout)
	for {
		w.reap()
		if w.Running() == 0 {
			return
		}
		select {
		case r := <-w.done:
			w.forget(r)
		case <-deadline:
			w.mu.Lock()
			for r := range w.running {
				r.cancel(errDrain)
			}
			w.mu.Unlock()
			deadline = nil
		}
	}
}

// pollGrace is how long a poll open when shutdown begins may still bring
// its answer.
const pollGrace = 2 * time.Second

// announceDrain tells the server, once, that this worker process is
// shutting down, so that nothing more is leased to it, not even the tasks
// it is about to hand back, and its open poll ends.
func (w *Worker) announceDrain() {
	w.drainOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := w.cfg.Client.heartbeat(ctx, scanfleet.Heartbeat{Running: w.Running(), Draining: true, Session: w.session}); err != nil {
			w.log.Warn("announce drain", slog.Any("err", err))
		}
	})
}

// handBack gives back tasks that arrived after shutdown began.
func (w *Worker) handBack(ctx context.Context, as []Assignment) {
	for _, a := range as {
		switch {
		case a.Task != nil:
			o := outcome{Status: scanfleet.TaskRequested, Error: "handed back: worker shut down", Attempt: a.Task.Attempts}
			if err := w.report(ctx, a.TaskID, o); err != nil {
				w.log.Warn("hand back", slog.String("task", a.TaskID), slog.Any("err", err))
			}
		case a.Release != nil:
			if err := a.Release(); err != nil {
				w.log.Warn("release dispatch", slog.String("task", a.TaskID), slog.Any("err", err))
			}
		}
	}
}

// taskRun is one task running on this worker.
type taskRun struct {
	id     string
	a      Assignment
	ctx    context.Context
	cancel context.CancelCauseFunc
	free   func() // gives the run's slot to the next task; once
}

func (w *Worker) start(bg context.Context, a Assignment) *taskRun {
	ctx, cancel := context.WithCancelCause(bg)
	r := &taskRun{id: a.TaskID, a: a, ctx: ctx, cancel: cancel}
	r.free = sync.OnceFunc(func() {
		w.done <- r
		select {
		case w.freed <- struct{}{}:
		default:
		}
	})
	w.mu.Lock()
	w.running[r] = true
	w.mu.Unlock()
	return r
}

// execute claims (when needed), runs and reports one task.
func (w *Worker) execute(bg context.Context, r *taskRun) {
	defer r.cancel(nil)
	log := w.log.With(slog.String("task", r.id))
	t := r.a.Task
	if r.a.stale {
		log.Debug("dispatch dropped: the store refused the claim")
		w.ack(bg, r, log)
		return
	}
	if t == nil {
		var err error
		t, err = w.cfg.Client.claim(r.ctx, r.id)
		switch code := scanfleet.ErrorCode(err); {
		case err == nil:
		case code == scanfleet.ECONFLICT || code == scanfleet.ENOTFOUND || code == scanfleet.EFORBIDDEN:
			// A stale or duplicate dispatch: the store says no.
			log.Debug("dispatch dropped", slog.String("reason", scanfleet.ErrorMessage(err)))
			w.ack(bg, r, log)
			return
		default:
			log.Warn("claim", slog.Any("err", err)) // not acked: it comes again
			return
		}
	}
	start := time.Now()
	env := newEnv(w, r, t)
	status, errMsg := w.runExecutor(r, t, env)
	if status == "" {
		log.Warn("lease lost: another worker may run the task; not reporting")
		return
	}
	if err := env.close(bg); err != nil && status == scanfleet.TaskFinished {
		status, errMsg = scanfleet.TaskFailed, "deliver results: "+err.Error()
	}
	o := outcome{Status: status, Error: errMsg, Logs: env.takeLogs(), Attempt: t.Attempts,
		Output: env.output(time.Since(start))}
	if p := env.progress(); p != (scanfleet.Progress{}) {
		o.Progress = &p // where it ended
	}
	// The run is over: its slot goes to the next task while the outcome is
	// on its way, so that a slow report does not idle the slots. Up to
	// Concurrency outcomes wait so; past that a run keeps its slot until
	// one is through, which holds the worker back when the server is slow.
	w.reporting <- struct{}{}
	defer func() { <-w.reporting }()
	r.free()
	if err := w.report(bg, t.ID, o); err != nil {
		log.Error("report outcome", slog.Any("err", err))
		return // not acked: the lease lapses and the task is retried
	}
	log.Info("task ended", slog.String("status", string(status)), slog.Int64("records", env.records()), slog.Duration("took", time.Since(start)))
	if status == scanfleet.TaskRequested && r.a.Release != nil {
		// Handed back: the same dispatch goes to another worker.
		if err := r.a.Release(); err != nil {
			log.Warn("release dispatch", slog.Any("err", err))
		}
		return
	}
	w.ack(bg, r, log)
}

// runExecutor runs the executor with the task's timeout and lease renewal
// and returns the status to report ("" when the lease was lost).
func (w *Worker) runExecutor(r *taskRun, t *scanfleet.Task, env *execEnv) (scanfleet.TaskStatus, string) {
	ex, ok := w.executors[t.Type]
	if !ok {
		return scanfleet.TaskFailed, fmt.Sprintf("this worker has no executor for task type %q", t.Type)
	}
	var in scanfleet.TaskInput
	if err := json.Unmarshal(t.Input, &in); err != nil {
		return scanfleet.TaskFailed, "decode task input: " + err.Error()
	}
	ctx := r.ctx
	if t.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(t.Timeout), errTimeout)
		defer cancel()
	}
	renewDone := make(chan struct{})
	go w.renew(r, t, env, renewDone)
	err := runSafely(ctx, ex, &in, env)
	r.cancel(nil) // stops renewal; keeps an earlier cause
	<-renewDone
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errLeaseLost), errors.Is(cause, errRevoked):
		return "", ""
	case errors.Is(cause, errCancelled):
		return scanfleet.TaskCancelled, "cancelled on request"
	case errors.Is(cause, errDrain):
		return scanfleet.TaskRequested, "handed back: worker shut down"
	case errors.Is(cause, errTimeout):
		return scanfleet.TaskFailed, fmt.Sprintf("timeout: ran longer than %s", time.Duration(t.Timeout))
	case err != nil:
		return scanfleet.TaskFailed, err.Error()
	}
	return scanfleet.TaskFinished, ""
}

// runSafely runs the executor and turns a panic into an error, so one bad
// executor cannot take the worker down.
func runSafely(ctx context.Context, ex scanfleet.Executor, in *scanfleet.TaskInput, env scanfleet.ExecEnv) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("executor panicked: %v", v)
		}
	}()
	return ex.Run(ctx, in, env)
}

// renew keeps the lease while the task runs and watches for cancel.
func (w *Worker) renew(r *taskRun, t *scanfleet.Task, env *execEnv, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(w.cfg.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-tick.C:
		}
		if r.a.InProgress != nil {
			_ = r.a.InProgress()
		}
		cancel, err := w.cfg.Client.renew(r.ctx, t.ID, t.Attempts, env.progress())
		switch {
		case scanfleet.ErrorCode(err) == scanfleet.ECONFLICT:
			r.cancel(errLeaseLost)
			return
		case err != nil:
			w.log.Warn("renew lease", slog.String("task", t.ID), slog.Any("err", err))
			w.checkRevoked(err)
		case cancel:
			r.cancel(errCancelled)
			return
		}
	}
}

func (w *Worker) ack(ctx context.Context, r *taskRun, log *slog.Logger) {
	if r.a.Ack == nil {
		return
	}
	if err := r.a.Ack(ctx); err != nil {
		log.Warn("ack dispatch", slog.Any("err", err))
	}
}
