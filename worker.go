package scanfleet

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"
)

// Worker is a process that runs tasks of one pool: in the server, on a
// machine with raw-socket rights, or as an agent in a remote network. It
// enrols once with a join token and then authenticates with a credential
// of its own, stored hashed.
type Worker struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Pool    Pool   `json:"pool"`
	Site    string `json:"site"`
	Version string `json:"version"`
	// Capabilities are what the worker detected it can do (a raw socket
	// opened, say), not what it was told.
	Capabilities []Requirement `json:"capabilities"`
	Executors    []string      `json:"executors"`
	// Types are the task types of the worker's external executors, which
	// the server learns from the workers that have them.
	Types       []ExecutorType `json:"types"`
	Transport   string         `json:"transport"` // "nats" or "http"
	Concurrency int            `json:"concurrency"`
	Running     int            `json:"running"`
	Draining    bool           `json:"draining"`
	Hash        string         `json:"-"`
	CreatedAt   time.Time      `json:"created_at"`
	LastSeenAt  time.Time      `json:"last_seen_at"`
	// State is derived when the worker is read; see WorkerState.
	State WorkerState `json:"state"`
}

// WorkerState says what a worker is doing, derived from its heartbeat.
type WorkerState string

// The worker states.
const (
	WorkerOnline  WorkerState = "online"  // heartbeating, running some tasks
	WorkerBusy    WorkerState = "busy"    // running as many tasks as it may
	WorkerIdle    WorkerState = "idle"    // heartbeating, running nothing
	WorkerOffline WorkerState = "offline" // no heartbeat for OfflineAfter
)

// OfflineAfter is how long after its last heartbeat a worker counts as
// offline.
const OfflineAfter = 45 * time.Second

// DeriveState sets w.State from its last heartbeat as seen at now.
func (w *Worker) DeriveState(now time.Time) {
	switch {
	case now.Sub(w.LastSeenAt) > OfflineAfter:
		w.State = WorkerOffline
	case w.Running == 0:
		w.State = WorkerIdle
	case w.Concurrency > 0 && w.Running >= w.Concurrency:
		w.State = WorkerBusy
	default:
		w.State = WorkerOnline
	}
}

// Has reports whether the worker detected capability r.
func (w *Worker) Has(r Requirement) bool {
	for _, c := range w.Capabilities {
		if c == r {
			return true
		}
	}
	return false
}

// CanRun reports whether the worker may run tasks of type t: same pool,
// every requirement of the type among its capabilities (task and recon
// data access come with the internal and baremetal pools), and an executor
// for it.
func (w *Worker) CanRun(t *TaskType) bool {
	if t.Pool() != w.Pool {
		return false
	}
	for _, r := range t.Requirements {
		granted := w.Has(r) || ((r == RequireTaskData || r == RequireReconData) && w.Pool != PoolExternal)
		if !granted {
			return false
		}
	}
	for _, e := range w.Executors {
		if e == t.Name {
			return true
		}
	}
	return false
}

// JoinToken lets one worker enrol, once, before it expires. It may pin the
// worker's pool and site.
type JoinToken struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Pool      Pool       `json:"pool"` // "" allows any pool
	Site      string     `json:"site"` // "" allows any site
	Hash      string     `json:"-"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at"`
	WorkerID  string     `json:"worker_id"`
}

// Secret prefixes, so that leaked secrets are recognisable.
const (
	JoinTokenPrefix  = "sfj_"
	WorkerCredPrefix = "sfw_"
)

// NewSecret returns a fresh 160-bit secret with the given prefix and its
// hash, the only form that is stored.
func NewSecret(prefix string) (secret, hash string, err error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	secret = prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
	return secret, HashToken(secret), nil
}

// ParsePool returns the pool named s or an EINVALID error.
func ParsePool(s string) (Pool, error) {
	switch p := Pool(s); p {
	case PoolExternal, PoolInternal, PoolBaremetal:
		return p, nil
	}
	return "", Errorf(EINVALID, "pool: %q is not one of external, internal, baremetal", s)
}

// Heartbeat is what a worker reports about itself periodically.
type Heartbeat struct {
	Running  int  `json:"running"`
	Draining bool `json:"draining"`
	// Session is random per worker process, so that a late request of a
	// process that is shutting down cannot undo its drain, while a new
	// process of the same worker starts afresh.
	Session string `json:"session,omitempty"`
}

// WorkerStore stores workers and their join tokens.
type WorkerStore interface {
	CreateJoinToken(ctx context.Context, t *JoinToken) error
	// EnrolWorker redeems the unused, unexpired join token whose hash is
	// joinHash, checks its pool and site against w, and stores w, all at
	// once; a used, expired or unknown token is EUNAUTHORIZED.
	EnrolWorker(ctx context.Context, joinHash string, w *Worker, now time.Time) error
	// FindWorkerByHash returns the worker whose credential has the hash,
	// or ENOTFOUND.
	FindWorkerByHash(ctx context.Context, hash string) (*Worker, error)
	FindWorker(ctx context.Context, id string) (*Worker, error)
	ListWorkers(ctx context.Context, now time.Time) ([]*Worker, error)
	HeartbeatWorker(ctx context.Context, id string, hb Heartbeat, now time.Time) error
	// ListJoinTokens returns the join tokens, newest first, never their
	// secrets.
	ListJoinTokens(ctx context.Context) ([]*JoinToken, error)
	// DeleteJoinToken revokes a join token; a worker that already
	// enrolled with it keeps its credential. An unknown id is ENOTFOUND.
	DeleteJoinToken(ctx context.Context, id string) error
	// AnnounceWorker replaces what the worker said of itself. An unknown
	// id is ENOTFOUND.
	AnnounceWorker(ctx context.Context, id string, a Announcement, now time.Time) error
	// RevokeWorker deletes a worker and its credential, and hands the
	// tasks it holds back (requested, the attempt not counted; cancelled
	// when their cancel was asked). An unknown id is ENOTFOUND.
	RevokeWorker(ctx context.Context, id string, now time.Time) error
}

// Command is an instruction from the server to one worker, delivered in
// its poll answer (HTTP transport) or on its command subject (NATS).
type Command struct {
	Type   string `json:"type"` // CommandCancel
	TaskID string `json:"task_id"`
}

// CommandCancel tells a worker to stop a task.
const CommandCancel = "cancel"

// EnrolRequest is what a worker sends, with its one-time join token, to
// enrol: what it is and what it detected it can do.
type EnrolRequest struct {
	JoinToken    string        `json:"join_token"`
	Name         string        `json:"name"`
	Pool         Pool          `json:"pool"`
	Site         string        `json:"site"`
	Version      string        `json:"version"`
	Capabilities []Requirement `json:"capabilities"`
	Executors    []string      `json:"executors"`
	// Types describes the executors the server may not know (external
	// programs, by their manifests).
	Types       []ExecutorType `json:"types,omitempty"`
	Transport   string         `json:"transport"`
	Concurrency int            `json:"concurrency"`
}

// ExecutorType is a task type as a worker announces it: the type with its
// default timeout, which TaskType keeps out of JSON.
type ExecutorType struct {
	TaskType
	Timeout Duration `json:"timeout"`
}

// NewExecutorType describes t for an announcement.
func NewExecutorType(t *TaskType) ExecutorType {
	return ExecutorType{TaskType: *t, Timeout: Duration(t.Timeout)}
}

// Type returns the task type announced.
func (e ExecutorType) Type() *TaskType {
	t := e.TaskType
	t.Timeout = time.Duration(e.Timeout)
	return &t
}

// Announcement is what a worker says of itself each time it starts: its
// version, detected capabilities and executors, which may have changed
// since it enrolled.
type Announcement struct {
	Version      string         `json:"version"`
	Capabilities []Requirement  `json:"capabilities"`
	Executors    []string       `json:"executors"`
	Types        []ExecutorType `json:"types"`
}

// EnrolResponse carries the worker's id and credential, shown only here,
// and where its task queue is.
type EnrolResponse struct {
	WorkerID   string        `json:"worker_id"`
	Credential string        `json:"credential"`
	NATS       *NATSEndpoint `json:"nats,omitempty"`
}

// NATSEndpoint tells a worker where the NATS queue is; it connects as its
// id with its credential.
type NATSEndpoint struct {
	URL string `json:"url"`
	// CA is the PEM certificate(s) a worker trusts for a tls:// URL, when
	// the server's NATS certificate is not signed by a public CA.
	CA string `json:"ca,omitempty"`
}
