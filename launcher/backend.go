package launcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Backend starts workers somewhere: processes on this machine, EC2
// instances, and so on. Each started worker runs "scanfleet worker" with
// the request's settings and --name set to the Instance.ID the backend
// returns, which is how the launcher tells when it enrolled.
type Backend interface {
	// Launch starts one worker. It returns ErrAtMax (wrapped) when the
	// backend's own cap is reached, and an error wrapping ErrNoCapacity
	// when the provider had no capacity anywhere it was allowed to look.
	Launch(ctx context.Context, req LaunchRequest) (Instance, error)
	// Running lists the workers this backend started that still run (a
	// live process, an EC2 instance pending or running), with their pool,
	// so that capacity is counted even before they enrol.
	Running(ctx context.Context) ([]Instance, error)
}

// LaunchRequest is what one launched worker is started with; the fields
// map onto the flags of "scanfleet worker".
type LaunchRequest struct {
	Pool        scanfleet.Pool
	Site        string
	ServerURL   string
	JoinToken   string // one-time; never logged
	IdleTimeout time.Duration
	Transport   string // "http" or "nats"
	Concurrency int
}

// Instance is one worker a backend started.
type Instance struct {
	// ID is the backend's name for it (an EC2 instance id, a generated
	// name for a process); the worker enrols under this name.
	ID      string         `json:"id"`
	Backend string         `json:"backend"`
	Pool    scanfleet.Pool `json:"pool"`
	// Detail says where it runs, for people: "pid 4242, log …",
	// "c7g.medium in subnet-0abc".
	Detail string `json:"detail,omitempty"`
	// Tries lists the placements tried before this one succeeded (EC2
	// fallback), the successful one last.
	Tries []Try `json:"tries,omitempty"`
}

// Try is one placement a backend tried: an instance type in a subnet.
// Empty fields mean the launch template's own choice.
type Try struct {
	InstanceType string `json:"instance_type,omitempty"`
	Subnet       string `json:"subnet,omitempty"`
	Error        string `json:"error,omitempty"` // empty on success
}

// String says what was tried and how it failed, for people.
func (t Try) String() string {
	s := cmpOr(t.InstanceType, "template type") + " in " + cmpOr(t.Subnet, "template subnet")
	if t.Error != "" {
		s += ": " + t.Error
	}
	return s
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ErrAtMax is returned (wrapped) by a backend whose own cap of running
// workers is reached.
var ErrAtMax = errors.New("at the backend's maximum of running workers")

// ErrNoCapacity is wrapped by a launch error when the provider had no
// capacity for any allowed placement.
var ErrNoCapacity = errors.New("no capacity")

// LaunchError is a failed launch with every placement tried.
type LaunchError struct {
	Tries []Try
	// Err is ErrNoCapacity when every placement lacked capacity, else the
	// error that stopped the fallback.
	Err error
}

// Error lists every placement tried.
func (e *LaunchError) Error() string {
	parts := make([]string, len(e.Tries))
	for i, t := range e.Tries {
		parts[i] = t.String()
	}
	if errors.Is(e.Err, ErrNoCapacity) {
		return fmt.Sprintf("no capacity after %d tries: %s", len(e.Tries), strings.Join(parts, "; "))
	}
	return fmt.Sprintf("%v (tried %s)", e.Err, strings.Join(parts, "; "))
}

// Unwrap returns Err, so that errors.Is(err, ErrNoCapacity) works.
func (e *LaunchError) Unwrap() error { return e.Err }

// Outcome is the result of one launch attempt, a closed set.
type Outcome string

// The outcomes of a launch attempt.
const (
	OutcomeLaunched   Outcome = "launched"    // the worker was started
	OutcomeAtMax      Outcome = "at-max"      // the backend's own cap was reached
	OutcomeNoCapacity Outcome = "no-capacity" // every placement lacked capacity
	OutcomeFailed     Outcome = "failed"      // anything else, including a worker that exited before it enrolled
)

// OutcomeOf maps a launch error to its outcome.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeLaunched
	case errors.Is(err, ErrAtMax):
		return OutcomeAtMax
	case errors.Is(err, ErrNoCapacity):
		return OutcomeNoCapacity
	}
	return OutcomeFailed
}

// Attempt is one launch attempt as the launcher recorded it.
type Attempt struct {
	ID       int64          `json:"id"` // increasing, from 1
	Time     time.Time      `json:"time"`
	Pool     scanfleet.Pool `json:"pool"`
	Site     string         `json:"site,omitempty"`
	Backend  string         `json:"backend"`
	Outcome  Outcome        `json:"outcome"`
	Instance string         `json:"instance,omitempty"` // Instance.ID
	Detail   string         `json:"detail,omitempty"`
	Tries    []Try          `json:"tries,omitempty"`
	Error    string         `json:"error,omitempty"`
	// WorkerID and EnrolledAt are set once the launched worker enrolled.
	WorkerID   string     `json:"worker_id,omitempty"`
	EnrolledAt *time.Time `json:"enrolled_at,omitempty"`
	// Repeats counts later attempts with the same outcome and error that
	// were folded into this one (Time is the latest), so that a backend at
	// its cap does not flood the history.
	Repeats int `json:"repeats,omitempty"`
}
