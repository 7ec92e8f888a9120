package scanfleet

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// ScheduleStore is what the scheduler needs of the store beyond scans and
// tasks: capacity counts, queued tasks to release, the state of a scan's
// runs, and the lease that makes one server replica the scheduler.
type ScheduleStore interface {
	// ActiveTasks counts, per pool, the tasks that hold or wait for a
	// worker: created, requested and started (not queued).
	ActiveTasks(ctx context.Context) (map[Pool]int, error)
	// ReleaseQueued moves up to max of pool's queued tasks, oldest first,
	// to requested, and returns them for the router to dispatch.
	ReleaseQueued(ctx context.Context, pool Pool, max int, now time.Time) ([]*Task, error)
	// ScanRunState returns a task of the scan over workspace that is not
	// done (created, queued, requested or started), or nil, and when the
	// newest finished or failed one ended (nil when none did).
	ScanRunState(ctx context.Context, scanID, workspace string) (inFlight *Task, lastEnd *time.Time, err error)
	// RunStates returns, for each of keys, whether a task is not done and
	// when the newest finished or failed one ended: ScanRunState for many
	// runs at once. A key without tasks has the zero RunState. Its cost
	// grows with the keys, not with the tasks that ended long ago.
	RunStates(ctx context.Context, keys []RunKey) (map[RunKey]RunState, error)
	// AcquireLease takes or renews the named lease for holder until
	// now+ttl; it reports false while another holder's lease runs.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error)
	// ReleaseLease gives the lease up, if holder has it.
	ReleaseLease(ctx context.Context, name, holder string) error
	// TasksEndedSince returns up to limit tasks that ended (finished,
	// failed or cancelled), in the order (updated_at, id), after the task
	// that ended at since with id afterID ("": every task of since too).
	TasksEndedSince(ctx context.Context, since time.Time, afterID string, limit int) ([]*Task, error)
	// GetMark and SetMark keep how far a pass over the tasks got.
	GetMark(ctx context.Context, name string) (time.Time, error)
	SetMark(ctx context.Context, name string, t time.Time) error
}

// RunKey names the runs of one scan in one workspace.
type RunKey struct{ ScanID, Workspace string }

// RunState is what the scheduler needs to know of a scan's runs in a
// workspace.
type RunState struct {
	InFlight bool       // a task is created, queued, requested or started
	LastEnd  *time.Time // when the newest finished or failed task ended
}

// Webhook events.
const (
	EventTaskFailed   = "task.failed"
	EventScanFinished = "scan.finished"
)

// WebhookEvents lists the events a webhook may subscribe to.
var WebhookEvents = []string{EventTaskFailed, EventScanFinished}

// Webhook is where a workspace's events are sent: a JSON POST signed with
// HMAC-SHA256 of the body under Secret (header X-Scanfleet-Signature).
type Webhook struct {
	Workspace string    `json:"workspace"`
	URL       string    `json:"url"`
	Secret    string    `json:"-"`
	Events    []string  `json:"events"` // empty: all
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate checks the URL and events.
func (h *Webhook) Validate() error {
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Errorf(EINVALID, "url: %q is not an http(s) URL", h.URL)
	}
	for i, e := range h.Events {
		ok := false
		for _, known := range WebhookEvents {
			ok = ok || e == known
		}
		if !ok {
			return Errorf(EINVALID, "events[%d]: %q is not one of task.failed, scan.finished", i, e)
		}
	}
	if h.Events == nil {
		h.Events = []string{}
	}
	return nil
}

// Wants reports whether the webhook subscribes to event.
func (h *Webhook) Wants(event string) bool {
	if len(h.Events) == 0 {
		return true
	}
	for _, e := range h.Events {
		if e == event {
			return true
		}
	}
	return false
}

// Delivery is one event for a workspace's webhook, and how sending it went.
type Delivery struct {
	ID        string          `json:"id"`
	Workspace string          `json:"workspace"`
	Event     string          `json:"event"`
	Payload   json.RawMessage `json:"payload"`
	// Status is pending (to be sent at NextAt), delivered, or failed
	// (gave up after MaxDeliveryAttempts).
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	NextAt    time.Time `json:"next_at"`
	LastCode  int       `json:"last_code"`
	LastError string    `json:"last_error"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// The statuses of a delivery.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// MaxDeliveryAttempts is how often a delivery is tried before it fails.
const MaxDeliveryAttempts = 8

// WebhookStore stores webhooks and their delivery log.
type WebhookStore interface {
	PutWebhook(ctx context.Context, h *Webhook) error
	// GetWebhook returns the workspace's webhook, or ENOTFOUND.
	GetWebhook(ctx context.Context, workspace string) (*Webhook, error)
	DeleteWebhook(ctx context.Context, workspace string) error
	// EnqueueDeliveries stores events as pending deliveries for the
	// workspaces that have a webhook wanting them; others are dropped.
	EnqueueDeliveries(ctx context.Context, ds []*Delivery) error
	// DueDeliveries returns up to limit pending deliveries due at now.
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*Delivery, error)
	// UpdateDelivery records an attempt: its status, next time, code and
	// error.
	UpdateDelivery(ctx context.Context, d *Delivery) error
	// ListDeliveries returns the workspace's deliveries, newest first.
	ListDeliveries(ctx context.Context, workspace string, limit int) ([]*Delivery, error)
}
