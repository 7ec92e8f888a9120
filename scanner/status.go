package scanner

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"maps"
	"net"
	"sync"
	"syscall"
)

// Status is how the probe of one target ended. The set is closed, as
// zgrab2's: every probe ends in exactly one, so that the counts of a task's
// output add up and two scanners mean the same by the same word. A status
// other than StatusSuccess is data about the target, not an error of the
// task.
type Status string

// The statuses.
const (
	StatusSuccess           Status = "success"            // the probe did what it set out to do
	StatusConnectionRefused Status = "connection-refused" // the port answered with a reset
	StatusConnectionTimeout Status = "connection-timeout" // no answer while connecting
	StatusConnectionClosed  Status = "connection-closed"  // the peer closed or reset an open connection
	StatusIOTimeout         Status = "io-timeout"         // connected, then no answer in time
	StatusUnreachable       Status = "unreachable"        // no route to the host or network
	StatusNameNotFound      Status = "name-not-found"     // a name that does not resolve
	StatusProtocolError     Status = "protocol-error"     // the peer spoke, but not the protocol expected
	StatusApplicationError  Status = "application-error"  // the peer spoke the protocol and refused (DNS REFUSED, SERVFAIL)
	StatusOutOfScope        Status = "out-of-scope"       // never touched: outside the task's scope
	StatusUnknownError      Status = "unknown-error"      // anything else; the log line has the cause
)

// Statuses lists every status.
var Statuses = []Status{
	StatusSuccess, StatusConnectionRefused, StatusConnectionTimeout, StatusConnectionClosed,
	StatusIOTimeout, StatusUnreachable, StatusNameNotFound, StatusProtocolError,
	StatusApplicationError, StatusOutOfScope, StatusUnknownError,
}

// ErrOutOfScope is the cause of a probe that was refused because its target,
// or every address its name resolved to, is outside the task's scope.
var ErrOutOfScope = errors.New("out of scope")

// StatusError gives an error the status a scanner knows it has, where the
// error's type alone does not say (a TLS handshake that failed on a
// malformed message is a protocol error).
type StatusError struct {
	Status Status
	Err    error
}

// Error returns the cause's message: the status is for counting, not for
// reading.
func (e *StatusError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *StatusError) Unwrap() error { return e.Err }

// WithStatus wraps err so that StatusOf returns s for it; a nil err stays nil.
func WithStatus(s Status, err error) error {
	if err == nil {
		return nil
	}
	return &StatusError{Status: s, Err: err}
}

// StatusOf maps the error of one probe to its status: nil is success, a
// StatusError says its own, and network errors are read from their type
// and errno. It is the one place that decides, so that every scanner counts
// the same failure the same way.
func StatusOf(err error) Status {
	if err == nil {
		return StatusSuccess
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var alert tls.AlertError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, ErrOutOfScope):
		return StatusOutOfScope
	case errors.Is(err, syscall.ECONNREFUSED):
		return StatusConnectionRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return StatusUnreachable
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return StatusNameNotFound
	case isTimeout(err):
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return StatusConnectionTimeout
		}
		return StatusIOTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, net.ErrClosed):
		return StatusConnectionClosed
	case errors.As(err, &alert), errors.As(err, &recordErr):
		return StatusProtocolError
	}
	return StatusUnknownError
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Counts counts events by name (statuses, records found) for a task's
// output; it is safe for concurrent use.
type Counts struct {
	mu sync.Mutex
	m  map[string]int64
}

// Add adds n to the count of key.
func (c *Counts) Add(key string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[key] += n
}

// Get returns the count of key.
func (c *Counts) Get(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

// Map returns a copy of every count, for ExecEnv.Result.
func (c *Counts) Map() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := maps.Clone(c.m)
	if out == nil {
		out = map[string]int64{}
	}
	return out
}
