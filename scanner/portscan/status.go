package portscan

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
)

// Status is how one probe of one port ended (zgrab2's ScanStatus for a
// connect scan). The set is closed: each probe ends in exactly one, and
// the service records a scan emits carry it as their state.
type Status string

// The statuses of a probe.
const (
	StatusOpen       Status = "open"         // the handshake completed
	StatusClosed     Status = "closed"       // refused: the host answered with a reset
	StatusFiltered   Status = "filtered"     // an ICMP error or a local firewall refused it
	StatusTimeout    Status = "timeout"      // no answer within the timeout, retries included
	StatusOutOfScope Status = "out-of-scope" // never dialed: the target is outside the scope
)

// Statuses lists every status, in the order the task's output shows them.
var Statuses = []Status{StatusOpen, StatusClosed, StatusFiltered, StatusTimeout, StatusOutOfScope}

// StatusOf maps the error of a connect to the probe's status: nil is open;
// a refusal or a reset is closed; an unreachable host or network, or a
// refusal by a firewall, is filtered; a timeout is a timeout. Any other
// error is filtered, the status of "no usable answer". The scanner retries
// errors of this machine (isLocal) and stops on cancellation before it
// asks for a status.
func StatusOf(err error) Status {
	var errno syscall.Errno
	if err == nil {
		return StatusOpen
	}
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ECONNREFUSED, syscall.ECONNRESET:
			return StatusClosed
		case syscall.ETIMEDOUT:
			return StatusTimeout
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN,
			syscall.EACCES, syscall.EPERM:
			return StatusFiltered
		}
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return StatusTimeout
	}
	return StatusFiltered
}

// isLocal reports whether a dial error is this machine's, not the
// target's: it ran out of descriptors, ephemeral ports or buffers. Such a
// probe is tried again after a pause instead of getting a status.
func isLocal(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.EADDRINUSE,
		syscall.ENOBUFS, syscall.ENOMEM, syscall.EAGAIN:
		return true
	}
	return false
}
